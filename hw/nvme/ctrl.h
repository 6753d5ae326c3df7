// The transport-independent NVMe controller: registers (PCI MMIO or fabrics properties),
// enable / shutdown / reset, admin and I/O command execution for the NVM and Zoned Namespace
// command sets. Transports feed it SQEs with data as byte spans (they own PRP/SGL handling,
// doorbells, interrupts, sockets) and receive CQEs through a callback.
//
// Threading: Submit() never blocks on storage. Read, Write, Append, Write Zeroes and a
// namespace's Flush run to completion: Submit hands them straight to the backend's asynchronous
// interface on the caller's thread, and they complete from the backend's callback (an I/O
// engine thread, or inside Submit). Other commands run on the subsystem's WorkerPool. A
// completion callback therefore runs on an engine or worker thread, or on the caller's.
// Requests come from per-queue free lists, so a steady stream of I/O allocates nothing.
// Register access and Submit are thread-safe.
//
// Files: ctrl.cc (registers, dispatch, completion), admin-identify.cc, admin-log.cc,
// admin-features.cc, admin-queues.cc (queue create/delete, abort, keep alive), admin-aer.cc,
// io.cc (NVM I/O), zns.cc (zone management, append).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "hw/nvme/fabrics-target.h"
#include "hw/nvme/namespace.h"
#include "hw/nvme/spec.h"
#include "hw/nvme/status.h"
#include "util/mutex.h"

namespace qzns::nvme {

class Subsystem;

enum class TransportKind : uint8_t { kFabrics, kPci };

struct ControllerConfig {
    TransportKind transport = TransportKind::kFabrics;
    uint16_t mqes = 1023;         // CAP.MQES, 0's based maximum queue size
    uint16_t max_io_queues = 64;  // I/O queue pairs a host may get (Set Features 07h)
    uint8_t mdts = 7;             // maximum transfer 2^mdts * 4 KiB (0 = unlimited)
    // Fabrics: in-capsule data the transport accepts on I/O queues (IOCCSZ = (64 + this) / 16).
    uint32_t in_capsule_data_bytes = 8192;
    uint16_t msix_vectors = 2048;  // PCI: interrupt vectors a CQ may name
    // PCI: offer Doorbell Buffer Config (OACS bit 8, admin 7Ch); fabrics never do.
    bool doorbell_buffer = true;
    // Keep-alive timeout teardown (fabrics): a controller whose host stayed silent for KATO plus
    // this grace is torn down.
    uint32_t kato_grace_ms = 1000;
};

// Which way a command moves data and how many bytes, from the SQE alone: what a PRP/SGL
// transport must map before Submit.
struct DataTransfer {
    enum Dir : uint8_t { kNone, kHostToController, kControllerToHost };
    Dir dir = kNone;
    uint32_t bytes = 0;
};

// Create I/O queue parameters after validation (PCI transports only).
struct IoCqParams {
    uint16_t qid;
    uint32_t entries;  // 1's based
    uint64_t prp1;     // physically contiguous ring (CAP.CQR = 1)
    bool interrupts_enabled;
    uint16_t vector;
};
struct IoSqParams {
    uint16_t qid;
    uint32_t entries;  // 1's based
    uint64_t prp1;
    uint16_t cqid;
    uint8_t priority;
};

// What a PCI-style transport (vfio-user) implements so the controller can manage queues that
// live in host memory. Every call comes from a controller thread while no other hook runs.
class PciQueueHooks {
public:
    virtual ~PciQueueHooks() = default;
    // CC.EN 0 -> 1: map the admin queues described by AQA/ASQ/ACQ (1's based sizes). False
    // puts the controller in Controller Fatal Status.
    virtual bool EnableAdminQueues(uint64_t asq, uint64_t acq, uint32_t sq_entries, uint32_t cq_entries) = 0;
    // Returns an NVMe status (0 = created). The controller has checked QID, size, vector, CQ.
    virtual uint16_t CreateIoCq(const IoCqParams& p) = 0;
    virtual uint16_t CreateIoSq(const IoSqParams& p) = 0;
    // The transport stops fetching from the SQ; commands already submitted still complete.
    virtual void DeleteIoSq(uint16_t qid) = 0;
    virtual void DeleteIoCq(uint16_t qid) = 0;
    // CC.EN 1 -> 0 (controller reset) or shutdown: forget every queue, admin included, and the
    // doorbell buffers.
    virtual void ResetQueues() = 0;
    // Doorbell Buffer Config (7Ch): `dbs` is the Shadow Doorbell buffer, `eis` the EventIdx
    // buffer, each one memory page of `page_size` bytes; the controller has checked that both
    // are non-zero and page aligned. Returns an NVMe status. A transport that does not
    // implement shadow doorbells keeps this default (and the controller's OACS still says
    // the command is supported: only transports that implement it should be PCI).
    virtual uint16_t SetDoorbellBuffer(uint64_t dbs, uint64_t eis, uint32_t page_size) {
        (void)dbs, (void)eis, (void)page_size;
        return sc::kInvalidOpcode | sc::kDnr;
    }
};

// Life cycle of a command inside the controller; stats() counts commands per state.
enum class RequestState : uint8_t { kQueued, kExecuting, kAerPending, kCount };

struct ControllerStats {
    std::array<uint64_t, static_cast<size_t>(RequestState::kCount)> in_state{};
    uint64_t completed = 0;
    uint64_t failed = 0;
};

class Controller : public std::enable_shared_from_this<Controller> {
public:
    Controller(std::shared_ptr<Subsystem> subsys, uint16_t cntlid, const ControllerConfig& cfg);
    ~Controller();
    Controller(const Controller&) = delete;
    Controller& operator=(const Controller&) = delete;

    uint16_t cntlid() const { return cntlid_; }
    const ControllerConfig& config() const { return cfg_; }
    Subsystem& subsystem() const { return *subsys_; }

    // ---- registers (PCI BAR0 below the doorbells; fabrics Property Get/Set) ----
    // size is 4 or 8 bytes. Unknown offsets read as 0.
    uint64_t ReadRegister(uint32_t offset, unsigned size);
    // False when the offset is not a writable register (Property Set: Invalid Field).
    bool WriteRegister(uint32_t offset, unsigned size, uint64_t value);
    uint32_t csts() const { return csts_.load(); }
    uint32_t cc() const;
    uint32_t interrupt_mask() const { return intms_.load(); }  // PCI INTMS/INTMC (pin/MSI only)

    // ---- commands ----
    // Submits one command of queue `qid` (0 = admin). `done` runs exactly once. A fabrics
    // queue passes the SQ head to report in the CQE (`sqhd` >= 0).
    void Submit(uint16_t qid, const SqeBytes& sqe, std::span<uint8_t> data, CompletionFn done,
                int32_t sqhd = -1);
    DataTransfer TransferOf(uint16_t qid, const SqeBytes& sqe) const;

    // ---- PCI transports ----
    void SetPciHooks(PciQueueHooks* hooks);

    // ---- fabrics transports (used by the target in fabrics.cc) ----
    void SetHost(const std::string& hostnqn, const std::array<uint8_t, 16>& hostid, uint32_t kato_ms);
    // A copy: SetHost may run on the admin queue while another thread looks the controller up.
    std::string hostnqn() const;
    // Binds an I/O queue (Connect QID > 0). `close` asks the transport to drop the connection.
    uint16_t AttachIoQueue(uint16_t qid, uint16_t sqsize, std::function<void()> close);
    void DetachIoQueue(uint16_t qid);
    void SetAdminClose(std::function<void()> close);
    // Called after Set Features changes KATO, so the target's keep-alive thread re-reads the
    // deadline (it sleeps without a timeout while no controller has one).
    void SetKeepAliveWake(std::function<void()> wake);
    // The association is over (admin queue gone, keep-alive expired, subsystem removed): pending
    // AERs complete as aborted, queues are asked to close, later commands fail.
    void Teardown(const char* why);
    bool torn_down() const { return torn_down_.load(); }
    // Keep Alive Timeout: true when KATO (plus grace) passed without a command.
    bool KeepAliveExpired(std::chrono::steady_clock::time_point now) const;
    std::chrono::steady_clock::time_point KeepAliveDeadline() const;
    uint32_t kato_ms() const { return kato_ms_.load(); }
    // Host activity: restarts the keep-alive timer (every command does this).
    void Touch();

    // ---- events ----
    // Discovery subsystem: the record set changed; a Discovery Log Page Change notice goes to
    // the host if it enabled the event (AEC bit 31).
    void OnDiscoveryLogChanged();
    // A zone of namespace `nsid` changed without the host asking (fault injection, RRL/FRL):
    // record it in the Changed Zone List and post a Zone Descriptor Changed notice.
    void OnZoneChanged(uint32_t nsid, uint64_t zslba);

    ControllerStats stats() const;

    // Active namespaces under the current CC.CSS / I/O command set profile.
    bool NamespaceActive(const Namespace& ns) const;
    std::shared_ptr<Namespace> ActiveNamespace(uint32_t nsid) const;

    // One command being processed (internal to the controller's files).
    struct Request {
        std::shared_ptr<Controller> ctrl;
        uint16_t qid = 0;
        Sqe cmd{};
        std::span<uint8_t> data;
        CompletionFn done;
        std::shared_ptr<Namespace> ns;
        uint32_t dw0 = 0, dw1 = 0;
        uint16_t status = 0;
        uint32_t c2h_len = 0;
        uint64_t err_lba = 0;
        int32_t sqhd = -1;
        RequestState state = RequestState::kQueued;
        // Run-to-completion I/O (io.cc): the backend request and how to account it.
        BlkRequest blk;
        IoKind io_kind = IoKind::kOther;
        Request* next_free = nullptr;  // the queue's free list
    };

private:
    friend class ControllerTestPeer;
    using Req = Request;

    void Dispatch(Req* r);
    void Execute(Req& r);
    void Complete(Req* r);
    // Per-queue free lists of requests: allocated on first use, reused for the controller's life.
    Req* NewRequest(uint16_t qid);
    void FreeRequest(Req* r);
    void SetState(Req& r, RequestState s);

    // ctrl.cc: CC transitions.
    void OnCcWrite(uint32_t value);
    void Enable(uint32_t cc);
    void Reset();
    void StartShutdown();
    uint32_t EffectiveZasl() const;
    uint32_t MpsMax() const;  // CAP.MPSMAX
    uint64_t MaxTransferBytes() const;
    // Fails `r` with Invalid Field / SGL length when the data buffer is too short for `need`.
    bool CheckData(Req& r, uint64_t need);
    // Copies `src` into the c2h buffer (up to `want` bytes) and sets c2h_len.
    void ReturnData(Req& r, const void* src, size_t len, size_t want);

    // admin-discovery.cc: the discovery subsystem's admin command set
    void ExecuteDiscoveryAdmin(Req& r);
    void IdentifyDiscovery(Req& r);
    void DiscoveryLogPage(Req& r);
    void DiscoveryFeatures(Req& r);
    // admin-identify.cc
    void Identify(Req& r);
    void FillIdCtrl(IdCtrl* id) const;
    // admin-log.cc
    void GetLogPage(Req& r);
    void RecordError(const Req& r);
    // admin-features.cc
    void GetFeatures(Req& r);
    void SetFeatures(Req& r);
    // admin-queues.cc
    void CreateIoCq(Req& r);
    void CreateIoSq(Req& r);
    void DeleteIoSq(Req& r);
    void DeleteIoCq(Req& r);
    void Abort(Req& r);
    void KeepAlive(Req& r);
    void DoorbellBufferConfig(Req& r);
    // admin-aer.cc
    void AsyncEventRequest(Req* r);
    void PostEvent(uint8_t type, uint8_t info, uint8_t log_page);
    void DeliverEvents() EXCLUDES(mu_);
    void AbortPendingAers(uint16_t status);
    void ClearEventMask(uint8_t log_page);
    // io.cc
    // Starts Read/Write/Append/Write Zeroes/namespace Flush on the backend's asynchronous
    // interface; false for commands that run on the worker pool instead.
    bool StartAsyncIo(Req& r);
    static void OnAsyncIoDone(BlkRequest* b);
    void ExecuteIo(Req& r);
    void Flush(Req& r);  // NSID FFFFFFFFh
    void DatasetManagement(Req& r);
    void Compare(Req& r);
    // zns.cc
    void ZoneMgmtSend(Req& r);
    void ZoneMgmtRecv(Req& r);

    std::shared_ptr<Subsystem> subsys_;
    const uint16_t cntlid_;
    const ControllerConfig cfg_;
    const bool discovery_;  // a controller of the discovery subsystem
    const std::chrono::steady_clock::time_point created_ = std::chrono::steady_clock::now();

    // Registers.
    std::atomic<uint32_t> csts_{0};
    std::atomic<uint32_t> intms_{0};
    mutable util::Mutex mu_;  // guards everything below unless atomic
    uint32_t cc_ GUARDED_BY(mu_) = 0;
    uint32_t aqa_ GUARDED_BY(mu_) = 0;
    uint64_t asq_ GUARDED_BY(mu_) = 0, acq_ GUARDED_BY(mu_) = 0;
    PciQueueHooks* hooks_ GUARDED_BY(mu_) = nullptr;

    // Features (Get/Set Features).
    struct Features {
        uint32_t arbitration = 0;
        uint32_t power_management = 0;
        uint16_t temp_over = 0x0157;   // 343 K
        uint16_t temp_under = 0;
        bool write_cache = true;
        uint16_t nsqa = 0, ncqa = 0;   // 0's based granted queues
        bool queues_set = false;
        uint32_t async_event_config = 0;
        uint64_t timestamp_ms = 0;     // value set by the host
        std::chrono::steady_clock::time_point timestamp_set_at{};
        bool timestamp_set = false;
        uint16_t iocs_index = 0;       // I/O Command Set Profile
    };
    Features feat_ GUARDED_BY(mu_);
    std::atomic<bool> write_cache_{true};

    // Fabrics association.
    std::string hostnqn_ GUARDED_BY(mu_);
    std::array<uint8_t, 16> hostid_ GUARDED_BY(mu_){};
    std::atomic<uint32_t> kato_ms_{0};
    std::atomic<int64_t> last_activity_ns_{0};
    std::function<void()> admin_close_ GUARDED_BY(mu_);
    std::function<void()> kato_wake_ GUARDED_BY(mu_);
    void WakeKeepAlive() EXCLUDES(mu_);
    std::map<uint16_t, std::function<void()>> io_queues_ GUARDED_BY(mu_);  // fabrics: qid -> close
    std::atomic<bool> torn_down_{false};

    // PCI queues: sqid -> cqid, and the CQs that exist.
    std::map<uint16_t, uint16_t> pci_sqs_ GUARDED_BY(mu_);
    std::set<uint16_t> pci_cqs_ GUARDED_BY(mu_);

    // Asynchronous events.
    struct PendingEvent {
        uint8_t type, info, log_page;
    };
    std::deque<Req*> aers_ GUARDED_BY(mu_);
    std::deque<PendingEvent> events_ GUARDED_BY(mu_);
    std::set<uint8_t> masked_log_pages_ GUARDED_BY(mu_);  // an event for this log page is outstanding

    // Logs.
    struct ErrorRecord {
        uint64_t count;
        uint16_t sqid, cid, status;
        uint64_t lba;
        uint32_t nsid;
    };
    std::deque<ErrorRecord> errors_ GUARDED_BY(mu_);  // newest first
    uint64_t error_count_ GUARDED_BY(mu_) = 0;
    struct ChangedZones {
        std::vector<uint64_t> zids;
        bool overflow = false;
    };
    std::map<uint32_t, ChangedZones> changed_zones_ GUARDED_BY(mu_);  // nsid -> list

    // Statistics (SMART and stats()).
    std::atomic<uint64_t> units_read_{0}, units_written_{0};  // bytes; SMART converts
    std::atomic<uint64_t> host_reads_{0}, host_writes_{0};
    std::atomic<uint64_t> in_state_[static_cast<size_t>(RequestState::kCount)] = {};
    std::atomic<uint64_t> completed_{0}, failed_{0};

    struct RequestPool {
        util::Mutex mu;  // submitting and completing threads of one queue
        Req* free GUARDED_BY(mu) = nullptr;
        uint32_t made GUARDED_BY(mu) = 0;  // requests of this pool, free or in flight
    };
    // Makes the pool of `qid` hold at least `n` requests: a PCI SQ of n entries gets them when
    // it is created, so its first burst of n commands does not allocate them one by one.
    void ReserveRequests(uint16_t qid, uint32_t n);
    std::unique_ptr<RequestPool[]> pools_;  // index: qid (0..max_io_queues)

    static constexpr unsigned kAerl = 3;
    static constexpr uint32_t kVersionDiscovery = 0x00010300;  // 1.3, as nvmet's discovery reports   // 4 outstanding AERs
    static constexpr unsigned kElpe = 63;  // 64 error log entries
};

}  // namespace qzns::nvme
