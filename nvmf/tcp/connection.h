// One NVMe/TCP connection = one NVMe queue: the controller side of the PDU protocol as a pure
// byte-stream engine (bytes in via Feed, bytes out via GatherOutput/ConsumeOutput), with no
// socket of its own, so the event loop, the unit tests and the fuzzer drive the same code.
// Requests live in a fixed table of slots; the slot index is the R2T transfer tag.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "hw/nvme/fabrics-target.h"
#include "nvmf/tcp/pdu.h"
#include "nvmf/tcp/stats.h"
#include "util/mutex.h"
#include "util/status.h"

namespace qzns::nvmf::tcp {

struct TcpTransportOptions {
    // MAXH2CDATA advertised in ICResp: largest H2CData payload (multiple of 4, >= 4096).
    uint32_t max_h2c_data = 128 * 1024;
    // Largest C2HData payload we send in one PDU.
    uint32_t max_c2h_data = 128 * 1024;
    // Largest in-capsule data accepted. Linux puts Fabrics and admin writes up to 8 KiB in the
    // capsule whatever IOCCSZ says, so this is at least 8192; the controller's IOCCSZ must not
    // promise more than (64 + this) / 16.
    uint32_t max_in_capsule_data = 8192;
    // Largest data transfer of one command (the controller's MDTS must not exceed it); larger
    // SGLs complete with Data SGL Length Invalid.
    uint32_t max_transfer = 1024 * 1024;
    // Most data requested by one R2T; 0 = the whole remaining transfer in one R2T.
    uint32_t max_r2t_length = 0;
    // Commands in flight per connection (>= the queue size the controller lets a host connect
    // with: MAXCMD / MQES). One more is a protocol violation answered by C2HTermReq.
    uint16_t max_outstanding = 128;
    // Data buffer bytes per connection; commands wait in NEED_BUFFER beyond it. With
    // max_outstanding this bounds what a host that never reads its responses can make the
    // connection hold (TcpConnection::MemoryBound): its commands wait for buffers, and one
    // command beyond max_outstanding is a protocol error that closes the connection.
    uint32_t max_buffer_bytes = 32 * 1024 * 1024;
    // Per-slot buffers up to this size are kept for reuse between commands.
    uint32_t retain_buffer_bytes = 128 * 1024;
    // End successful reads with C2HData LAST|SUCCESS instead of a CapsuleResp (Linux >= 5.x
    // accepts it; used only when the CQE carries nothing but success).
    bool c2h_success_optimization = true;
    // Diagnostics sink (nullptr: silent).
    std::function<void(std::string_view)> log;

    [[nodiscard]] Status Validate() const;
};

class TcpConnection;
struct TcpRequest;

// Completions come back from any thread; they are queued here and handed to their connection
// on the owning event-loop thread. Posts from the owner thread itself skip the lock and the
// wake-up. After Detach (the loop is gone) posts are dropped.
class CompletionMailbox {
public:
    // wake: called (under the lock) when the queue goes from empty to non-empty, from a thread
    // that is not the owner; e.g. writes an eventfd.
    explicit CompletionMailbox(std::function<void()> wake = nullptr) : wake_(std::move(wake)) {}

    void SetOwnerThread(std::thread::id id) { owner_.store(id, std::memory_order_release); }
    void PostCompletion(TcpRequest* req, uint32_t gen, const nvme::CqeBytes& cqe, uint32_t len);
    void PostTask(std::function<void()> task);
    // Owner thread: delivers everything queued; `touched` sees each connection that got a
    // completion. Returns the number of items delivered.
    size_t Drain(const std::function<void(TcpConnection*)>& touched);
    void Detach();

private:
    struct Item {
        TcpRequest* req;
        uint32_t gen;
        uint32_t len;
        nvme::CqeBytes cqe;
        std::function<void()> task;
    };
    std::function<void()> wake_;
    std::atomic<std::thread::id> owner_{};
    util::Mutex mu_;
    bool detached_ GUARDED_BY(mu_) = false;
    std::vector<Item> remote_ GUARDED_BY(mu_);
    std::vector<Item> local_;         // owner thread only
    std::vector<Item> scratch_;       // owner thread only
};

// Snapshot of a request for debugging ("why is this command stuck?").
struct TcpRequestInfo {
    std::string peer;
    uint16_t cid;
    uint8_t opcode;
    RequestState state;
    uint32_t length;
};

class TcpConnection {
public:
    enum class CloseMode { kNone, kAfterFlush, kNow };

    // `close_request` is handed to the queue's SetCloseRequest (may be empty).
    TcpConnection(std::unique_ptr<nvme::FabricsQueue> queue, const TcpTransportOptions& opts,
                  std::shared_ptr<CompletionMailbox> mailbox, TcpStats* stats, std::string peer,
                  std::function<void()> close_request);
    ~TcpConnection();
    TcpConnection(const TcpConnection&) = delete;
    TcpConnection& operator=(const TcpConnection&) = delete;

    // --- receive path ---
    void Feed(const uint8_t* p, size_t n);
    // Non-empty while the next bytes on the stream are payload for a request buffer: the caller
    // may receive straight into it and report with DirectDataReceived.
    std::span<uint8_t> DirectDataSink();
    void DirectDataReceived(size_t n);

    // --- send path ---
    bool HasOutput() const { return tx_count_ != 0; }
    // Fills iov with the unsent bytes in order; returns the number of entries used.
    int GatherOutput(struct iovec* iov, int max_iov) const;
    void ConsumeOutput(size_t n);

    // --- lifetime ---
    CloseMode close_mode() const { return close_mode_; }
    // The socket is gone: detaches the queue (FabricsQueue::Disconnect) and frees every request
    // the target does not hold. Idempotent.
    void Shutdown();
    // Nothing is at the target any more: the object may be destroyed.
    bool Idle() const { return in_flight_ == 0; }
    bool shut_down() const { return shut_down_; }
    bool ic_done() const { return ctx_.ic_done; }  // ICReq/ICResp exchanged
    // Owner thread: a completion for one of our requests (from CompletionMailbox).
    void OnCompletion(TcpRequest* req, uint32_t gen, const nvme::CqeBytes& cqe, uint32_t len);

    const std::string& peer() const { return peer_; }
    // Bytes this connection holds now (request slots, data buffers, transmit ring; published
    // as TcpStats::memory_bytes), and the most any connection with these options can hold
    // whatever its host sends or fails to read.
    uint64_t memory_bytes() const;
    static uint64_t MemoryBound(const TcpTransportOptions& opts);
    void AppendRequestInfo(std::vector<TcpRequestInfo>* out) const;
    void* owner = nullptr;  // the event loop's per-socket record

private:
    friend class CompletionMailbox;
    struct TxEntry;
    enum class RxState : uint8_t { kCommonHeader, kHeader, kPad, kData, kDataDigest, kDead };

    // receive
    void OnCommonHeader();
    void OnHeader();
    void OnPayloadDone();
    void BeginPayload(uint8_t* dst);
    void FinishPdu();
    void HandleIcReq();
    void HandleCapsuleHeader();
    void HandleH2CDataHeader();
    void Fatal(const PduError& e);
    void Log(std::string_view what) const;

    // request flow
    TcpRequest* AllocRequest();
    void SetState(TcpRequest* r, RequestState s);
    void StartCommand(TcpRequest* r);
    void ContinueWithBuffer(TcpRequest* r);
    bool AcquireBuffer(TcpRequest* r, uint32_t len, bool exempt);
    void ReleaseBuffer(TcpRequest* r);
    void ReleaseRequest(TcpRequest* r);
    void ServeBufferWaiters();
    void SendR2t(TcpRequest* r);
    void Submit(TcpRequest* r, std::span<uint8_t> data);
    void CompleteLocally(TcpRequest* r, uint8_t sct, uint8_t sc, bool dnr);
    void QueueResponse(TcpRequest* r, const nvme::CqeBytes& cqe, uint32_t c2h_len);

    void AccountMemory();

    // send
    TxEntry& PushTx();
    void QueueTermReq(const PduError& e);
    void InitHeader(TxEntry& e, PduType type, uint8_t hlen, uint32_t data_len, bool data_pdu);

    std::unique_ptr<nvme::FabricsQueue> queue_;
    TcpTransportOptions opts_;
    std::shared_ptr<CompletionMailbox> mailbox_;
    TcpStats* stats_;
    std::string peer_;

    // negotiated by ICReq/ICResp
    PduRxContext ctx_;
    uint8_t hpda_ = 0;

    // receive state
    RxState rx_ = RxState::kCommonHeader;
    uint8_t hdr_[256];
    uint32_t hdr_have_ = 0;
    PduLayout cur_;
    uint32_t pad_have_ = 0;
    uint8_t* data_dst_ = nullptr;  // nullptr: payload discarded
    uint32_t data_have_ = 0;
    uint32_t data_crc_ = 0;
    uint8_t ddgst_[kDigestLen];
    uint32_t ddgst_have_ = 0;
    TcpRequest* cur_req_ = nullptr;

    // requests
    std::vector<std::unique_ptr<TcpRequest>> slots_;
    std::vector<uint16_t> free_slots_;
    std::vector<uint16_t> buffer_waiters_;  // FIFO of slots in kNeedBuffer
    size_t buffer_waiters_head_ = 0;
    uint64_t buffer_bytes_ = 0;  // allocated capacity over all slots
    uint32_t in_flight_ = 0;     // requests at the target (done not yet delivered)
    uint64_t reported_memory_ = 0;  // memory_bytes() as last added to stats_->memory_bytes

    // transmit ring
    std::vector<TxEntry> tx_;
    size_t tx_head_ = 0;
    size_t tx_count_ = 0;
    size_t tx_head_sent_ = 0;  // bytes of the head entry already sent

    CloseMode close_mode_ = CloseMode::kNone;
    bool shut_down_ = false;
};

}  // namespace qzns::nvmf::tcp
