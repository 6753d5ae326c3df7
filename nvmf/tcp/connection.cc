#include "nvmf/tcp/connection.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "util/crc32c.h"
#include "util/endian.h"

namespace qzns::nvmf::tcp {

namespace {

uint16_t Load16(const uint8_t* p) { return reinterpret_cast<const le16*>(p)->get(); }
uint32_t Load32(const uint8_t* p) { return reinterpret_cast<const le32*>(p)->get(); }
uint64_t Load64(const uint8_t* p) { return reinterpret_cast<const le64*>(p)->get(); }
void Store16(uint8_t* p, uint16_t v) { reinterpret_cast<le16*>(p)->set(v); }

// SQE / CQE byte offsets (NVMe base spec; facts §A2).
constexpr size_t kSqeOpcode = 0;
constexpr size_t kSqeFlags = 1;       // PSDT in bits 7:6
constexpr size_t kSqeCid = 2;
constexpr size_t kSqeFctype = 4;      // Fabrics commands (opcode 7Fh)
constexpr size_t kSqeSglAddr = 24;
constexpr size_t kSqeSglLen = 32;
constexpr size_t kSqeSglId = 39;      // (type << 4) | subtype
constexpr size_t kCqeDw0 = 0;
constexpr size_t kCqeDw1 = 4;
constexpr size_t kCqeCid = 12;
constexpr size_t kCqeStatus = 14;
constexpr uint8_t kOpcodeFabrics = 0x7f;
constexpr uint8_t kPsdtSgl = 1;  // SGLs for data and metadata buffer (Linux sets 0x40)

// SGL descriptor types the Linux host generates (host/tcp.c): in-capsule data is a Data Block
// descriptor with the Offset subtype; data moved by R2T/H2CData or C2HData (and "no data") is a
// Transport SGL Data Block with the transport-specific subtype Ah.
constexpr uint8_t kSglDataBlock = 0x0, kSglSubOffset = 0x1;
constexpr uint8_t kSglTransportDataBlock = 0x5, kSglSubTransport = 0xa;

// Generic command status values the transport itself returns (SCT 0).
constexpr uint8_t kScInvalidField = 0x02;
constexpr uint8_t kScDataSglLengthInvalid = 0x0f;
constexpr uint8_t kScSglDescriptorTypeInvalid = 0x11;
constexpr uint8_t kScSglOffsetInvalid = 0x16;
constexpr uint8_t kScTransientTransportError = 0x22;

constexpr uint16_t kNoSlot = 0xffff;

enum class Direction : uint8_t { kNone, kH2C, kC2H, kBidi };

// Data transfer direction: opcode bits 1:0 (Fabrics commands: FCTYPE bits 1:0).
Direction DirectionOf(const nvme::SqeBytes& sqe) {
    uint8_t op = sqe.b[kSqeOpcode];
    uint8_t bits = (op == kOpcodeFabrics ? sqe.b[kSqeFctype] : op) & 3;
    return static_cast<Direction>(bits);
}

}  // namespace

const char* RequestStateName(RequestState s) {
    switch (s) {
    case RequestState::kFree: return "free";
    case RequestState::kNew: return "new";
    case RequestState::kNeedBuffer: return "need-buffer";
    case RequestState::kAwaitingR2tData: return "awaiting-r2t-data";
    case RequestState::kExecuting: return "executing";
    case RequestState::kTransferringC2h: return "transferring-c2h";
    case RequestState::kCompleted: return "completed";
    }
    return "?";
}

void TcpStatsSnapshot::Accumulate(const TcpStats& s) {
    auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    connections_accepted += ld(s.connections_accepted);
    connections_closed += ld(s.connections_closed);
    connections_active = connections_accepted - connections_closed;
    pdus_rx += ld(s.pdus_rx);
    pdus_tx += ld(s.pdus_tx);
    bytes_rx += ld(s.bytes_rx);
    bytes_tx += ld(s.bytes_tx);
    commands += ld(s.commands);
    r2ts += ld(s.r2ts);
    c2h_success += ld(s.c2h_success);
    term_reqs_sent += ld(s.term_reqs_sent);
    term_reqs_received += ld(s.term_reqs_received);
    header_digest_errors += ld(s.header_digest_errors);
    data_digest_errors += ld(s.data_digest_errors);
    transport_errors += ld(s.transport_errors);
    for (size_t i = 0; i < kRequestStateCount; i++)
        requests_in_state[i] += s.requests_in_state[i].load(std::memory_order_relaxed);
    memory_bytes += s.memory_bytes.load(std::memory_order_relaxed);
    connection_memory_peak = std::max(connection_memory_peak, s.connection_memory_peak.load(std::memory_order_relaxed));
}

Status TcpTransportOptions::Validate() const {
    if (max_h2c_data < kMinMaxH2CData || max_h2c_data % 4 != 0)
        return Status::Error(EINVAL, "maxh2cdata must be a multiple of 4 and at least 4096");
    if (max_c2h_data < 512) return Status::Error(EINVAL, "max C2HData payload below 512");
    if (max_in_capsule_data < 8192 || max_in_capsule_data > 1024 * 1024)
        return Status::Error(EINVAL, "in-capsule data limit must be 8 KiB..1 MiB (Linux sends "
                                     "up to 8 KiB of admin/Fabrics data in the capsule)");
    if (max_transfer < 4096) return Status::Error(EINVAL, "max transfer below 4096");
    if (max_r2t_length != 0 && max_r2t_length < 512)
        return Status::Error(EINVAL, "max R2T length below 512");
    if (max_outstanding == 0 || max_outstanding > 4096)
        return Status::Error(EINVAL, "outstanding commands per connection must be 1..4096");
    if (max_buffer_bytes < max_transfer)
        return Status::Error(EINVAL, "buffer budget smaller than one max transfer");
    return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Requests and transmit entries

struct TcpRequest {
    TcpConnection* conn = nullptr;
    uint16_t slot = 0;
    uint32_t gen = 0;  // bumped on release: a stale or repeated completion is recognised
    RequestState state = RequestState::kFree;
    nvme::SqeBytes sqe{};
    uint16_t cid = 0;
    Direction dir = Direction::kNone;
    uint32_t len = 0;      // transfer length (SGL)
    uint32_t icd_len = 0;  // in-capsule bytes received
    uint32_t r2t_end = 0;  // end of the outstanding R2T
    uint32_t h2c_next = 0; // next expected H2CData offset
    bool digest_error = false;
    std::unique_ptr<uint8_t[]> buf;
    uint32_t cap = 0;
};

struct TcpConnection::TxEntry {
    uint8_t hdr[kTermReqHlen + kTermReqMaxData];  // header, header digest, padding to PDO
    uint16_t hdr_len = 0;
    uint16_t release_slot = kNoSlot;  // request freed once this entry is on the wire
    uint32_t data_len = 0;
    const uint8_t* data = nullptr;
    uint8_t ddgst[kDigestLen];
    uint8_t ddgst_len = 0;
    uint8_t hlen = 0;
    bool hdgst = false;
    size_t total() const { return size_t{hdr_len} + data_len + ddgst_len; }
};

// ---------------------------------------------------------------------------------------------
// CompletionMailbox

void CompletionMailbox::PostCompletion(TcpRequest* req, uint32_t gen, const nvme::CqeBytes& cqe,
                                       uint32_t len) {
    if (std::this_thread::get_id() == owner_.load(std::memory_order_acquire)) {
        local_.push_back(Item{req, gen, len, cqe, nullptr});
        return;
    }
    util::MutexLock lk(mu_);
    if (detached_) return;
    bool was_empty = remote_.empty();
    remote_.push_back(Item{req, gen, len, cqe, nullptr});
    if (was_empty && wake_) wake_();
}

void CompletionMailbox::PostTask(std::function<void()> task) {
    if (std::this_thread::get_id() == owner_.load(std::memory_order_acquire)) {
        local_.push_back(Item{nullptr, 0, 0, {}, std::move(task)});
        return;
    }
    util::MutexLock lk(mu_);
    if (detached_) return;
    bool was_empty = remote_.empty();
    remote_.push_back(Item{nullptr, 0, 0, {}, std::move(task)});
    if (was_empty && wake_) wake_();
}

size_t CompletionMailbox::Drain(const std::function<void(TcpConnection*)>& touched) {
    size_t n = 0;
    for (;;) {
        scratch_.clear();
        scratch_.swap(local_);
        {
            util::MutexLock lk(mu_);
            if (!remote_.empty()) {
                scratch_.insert(scratch_.end(), std::make_move_iterator(remote_.begin()),
                                std::make_move_iterator(remote_.end()));
                remote_.clear();
            }
        }
        if (scratch_.empty()) break;
        for (Item& it : scratch_) {
            n++;
            if (it.task) {
                it.task();
                continue;
            }
            TcpConnection* c = it.req->conn;
            c->OnCompletion(it.req, it.gen, it.cqe, it.len);
            if (touched) touched(c);
        }
    }
    scratch_.clear();
    return n;
}

void CompletionMailbox::Detach() {
    util::MutexLock lk(mu_);
    detached_ = true;
    remote_.clear();
}

// ---------------------------------------------------------------------------------------------
// TcpConnection: construction and lifetime

TcpConnection::TcpConnection(std::unique_ptr<nvme::FabricsQueue> queue,
                             const TcpTransportOptions& opts,
                             std::shared_ptr<CompletionMailbox> mailbox, TcpStats* stats,
                             std::string peer, std::function<void()> close_request)
    : queue_(std::move(queue)),
      opts_(opts),
      mailbox_(std::move(mailbox)),
      stats_(stats),
      peer_(std::move(peer)) {
    ctx_.max_h2c_data = opts_.max_h2c_data;
    ctx_.max_in_capsule_data = opts_.max_in_capsule_data;
    slots_.reserve(opts_.max_outstanding);
    free_slots_.reserve(opts_.max_outstanding);
    buffer_waiters_.reserve(opts_.max_outstanding);
    for (uint16_t i = 0; i < opts_.max_outstanding; i++) {
        auto r = std::make_unique<TcpRequest>();
        r->conn = this;
        r->slot = i;
        slots_.push_back(std::move(r));
    }
    for (uint16_t i = opts_.max_outstanding; i > 0; i--) free_slots_.push_back(i - 1);
    tx_.resize(16);
    if (close_request) queue_->SetCloseRequest(std::move(close_request));
    AccountMemory();
}

TcpConnection::~TcpConnection() {
    Shutdown();
    if (!Idle()) Log("destroyed with commands still at the target");
    stats_->memory_bytes.fetch_sub(static_cast<int64_t>(reported_memory_), std::memory_order_relaxed);
}

uint64_t TcpConnection::memory_bytes() const {
    return sizeof(*this) + slots_.size() * sizeof(TcpRequest) + buffer_bytes_ + tx_.size() * sizeof(TxEntry);
}

uint64_t TcpConnection::MemoryBound(const TcpTransportOptions& o) {
    // Data: the budget, plus in-capsule data, which is exempt from it (one capsule per slot).
    const uint64_t data = uint64_t{o.max_buffer_bytes} + uint64_t{o.max_outstanding} * o.max_in_capsule_data;
    // Transmit entries one request can have queued at once: its C2HData PDUs, or the R2Ts a
    // host answers without reading them, plus the response; then ICResp and a C2HTermReq. The
    // ring doubles when full, so it is at most twice that (and at least its initial 16).
    const uint64_t piece = std::min<uint64_t>(o.max_c2h_data, o.max_r2t_length ? o.max_r2t_length : o.max_c2h_data);
    const uint64_t per_request = (uint64_t{o.max_transfer} + piece - 1) / piece + 2;
    const uint64_t entries = std::max<uint64_t>(16, 2 * (o.max_outstanding * per_request + 2));
    return sizeof(TcpConnection) + uint64_t{o.max_outstanding} * sizeof(TcpRequest) + data + entries * sizeof(TxEntry);
}

// Single writer per TcpStats (the owning event loop), so load-compare-store suffices for the peak.
void TcpConnection::AccountMemory() {
    const uint64_t now = memory_bytes();
    stats_->memory_bytes.fetch_add(static_cast<int64_t>(now) - static_cast<int64_t>(reported_memory_),
                                   std::memory_order_relaxed);
    reported_memory_ = now;
    if (now > stats_->connection_memory_peak.load(std::memory_order_relaxed))
        stats_->connection_memory_peak.store(now, std::memory_order_relaxed);
}

void TcpConnection::Log(std::string_view what) const {
    if (!opts_.log) return;
    std::string line = "nvme-tcp " + peer_ + ": ";
    line.append(what);
    opts_.log(line);
}

void TcpConnection::Shutdown() {
    if (shut_down_) return;
    shut_down_ = true;
    rx_ = RxState::kDead;
    // Unsent output dies with the socket; the requests it referenced are released below.
    tx_count_ = tx_head_ = tx_head_sent_ = 0;
    buffer_waiters_.clear();
    buffer_waiters_head_ = 0;
    queue_->Disconnect();
    for (auto& r : slots_) {
        if (r->state != RequestState::kFree && r->state != RequestState::kExecuting)
            ReleaseRequest(r.get());
    }
}

void TcpConnection::AppendRequestInfo(std::vector<TcpRequestInfo>* out) const {
    for (const auto& r : slots_) {
        if (r->state == RequestState::kFree) continue;
        out->push_back(TcpRequestInfo{peer_, Load16(r->sqe.b + kSqeCid), r->sqe.b[kSqeOpcode],
                                      r->state, r->len});
    }
}

// ---------------------------------------------------------------------------------------------
// Receive path

void TcpConnection::Feed(const uint8_t* p, size_t n) {
    TcpStats::Add(stats_->bytes_rx, n);
    while (n > 0) {
        size_t take = 0;
        switch (rx_) {
        case RxState::kDead:
            return;
        case RxState::kCommonHeader:
            take = std::min<size_t>(n, sizeof(PduCommonHeader) - hdr_have_);
            std::memcpy(hdr_ + hdr_have_, p, take);
            hdr_have_ += static_cast<uint32_t>(take);
            if (hdr_have_ == sizeof(PduCommonHeader)) OnCommonHeader();
            break;
        case RxState::kHeader:
            take = std::min<size_t>(n, cur_.header_len - hdr_have_);
            std::memcpy(hdr_ + hdr_have_, p, take);
            hdr_have_ += static_cast<uint32_t>(take);
            if (hdr_have_ == cur_.header_len) OnHeader();
            break;
        case RxState::kPad:
            take = std::min<size_t>(n, cur_.pad_len - pad_have_);
            pad_have_ += static_cast<uint32_t>(take);
            if (pad_have_ == cur_.pad_len) rx_ = RxState::kData;
            break;
        case RxState::kData:
            take = std::min<size_t>(n, cur_.data_len - data_have_);
            if (data_dst_) std::memcpy(data_dst_ + data_have_, p, take);
            if (cur_.ddgst_len) data_crc_ = Crc32c(p, take, data_crc_);
            data_have_ += static_cast<uint32_t>(take);
            if (data_have_ == cur_.data_len) {
                if (cur_.ddgst_len)
                    rx_ = RxState::kDataDigest;
                else
                    OnPayloadDone();
            }
            break;
        case RxState::kDataDigest:
            take = std::min<size_t>(n, kDigestLen - ddgst_have_);
            std::memcpy(ddgst_ + ddgst_have_, p, take);
            ddgst_have_ += static_cast<uint32_t>(take);
            if (ddgst_have_ == kDigestLen) OnPayloadDone();
            break;
        }
        p += take;
        n -= take;
    }
}

std::span<uint8_t> TcpConnection::DirectDataSink() {
    if (rx_ != RxState::kData || !data_dst_) return {};
    return {data_dst_ + data_have_, cur_.data_len - data_have_};
}

void TcpConnection::DirectDataReceived(size_t n) {
    TcpStats::Add(stats_->bytes_rx, n);
    if (cur_.ddgst_len) data_crc_ = Crc32c(data_dst_ + data_have_, n, data_crc_);
    data_have_ += static_cast<uint32_t>(n);
    if (data_have_ == cur_.data_len) {
        if (cur_.ddgst_len)
            rx_ = RxState::kDataDigest;
        else
            OnPayloadDone();
    }
}

void TcpConnection::OnCommonHeader() {
    PduCommonHeader ch;
    std::memcpy(&ch, hdr_, sizeof(ch));
    auto l = ParsePduHeader(ch, ctx_);
    if (!l.ok()) return Fatal(l.error());
    cur_ = l.value();
    rx_ = RxState::kHeader;
}

void TcpConnection::OnHeader() {
    auto chk = CheckPduHeader({hdr_, hdr_have_}, cur_);
    if (!chk.ok()) {
        if (chk.error().fes == Fes::kHeaderDigestError) TcpStats::Add(stats_->header_digest_errors);
        return Fatal(chk.error());
    }
    data_dst_ = nullptr;
    switch (cur_.type) {
    case PduType::kIcReq:
        HandleIcReq();
        break;
    case PduType::kCapsuleCmd:
        HandleCapsuleHeader();
        break;
    case PduType::kH2CData:
        HandleH2CDataHeader();
        break;
    case PduType::kH2CTermReq: {
        TermReqPdu t;
        std::memcpy(&t, hdr_, sizeof(t));
        TcpStats::Add(stats_->term_reqs_received);
        Log("host sent H2CTermReq, FES " + std::to_string(t.fes.get()));
        TcpStats::Add(stats_->pdus_rx);
        close_mode_ = CloseMode::kNow;
        rx_ = RxState::kDead;
        return;
    }
    default:
        return Fatal(PduError{Fes::kInvalidHeaderField, kFeiType, "unexpected PDU type"});
    }
    if (rx_ == RxState::kDead) return;
    if (cur_.data_len == 0)
        FinishPdu();
    else
        rx_ = cur_.pad_len ? RxState::kPad : RxState::kData;
}

void TcpConnection::OnPayloadDone() {
    if (cur_.ddgst_len && LoadDigest(ddgst_) != data_crc_) {
        // Not fatal (NVMe/TCP 1.0 §7.4.6.2): the command fails with Transient Transport Error.
        TcpStats::Add(stats_->data_digest_errors);
        Log("data digest mismatch");
        if (cur_req_) cur_req_->digest_error = true;
    }
    TcpRequest* r = cur_req_;
    const PduType type = cur_.type;
    const uint32_t len = cur_.data_len;
    FinishPdu();
    if (!r) return;
    if (type == PduType::kCapsuleCmd) {
        r->icd_len = len;
        StartCommand(r);
        return;
    }
    // H2CData
    r->h2c_next += len;
    if (r->h2c_next < r->r2t_end) return;
    if (r->r2t_end < r->len) return SendR2t(r);
    if (r->digest_error)
        return CompleteLocally(r, 0, kScTransientTransportError, false);
    Submit(r, {r->buf.get(), r->len});
}

void TcpConnection::FinishPdu() {
    if (rx_ == RxState::kDead) return;
    TcpStats::Add(stats_->pdus_rx);
    rx_ = RxState::kCommonHeader;
    hdr_have_ = pad_have_ = data_have_ = ddgst_have_ = 0;
    data_crc_ = 0;
    data_dst_ = nullptr;
    cur_req_ = nullptr;
}

void TcpConnection::HandleIcReq() {
    IcReqPdu req;
    std::memcpy(&req, hdr_, sizeof(req));
    hpda_ = req.hpda;
    ctx_.hdgst = (req.dgst & kDigestHeader) != 0;
    ctx_.ddgst = (req.dgst & kDigestData) != 0;
    ctx_.ic_done = true;
    // MAXR2T (0's based) limits R2Ts outstanding per command; we never have more than one.
    TxEntry& e = PushTx();
    e.hlen = kIcPduLen;
    e.hdr_len = kIcPduLen;
    IcRespPdu resp{};
    resp.ch.type = static_cast<uint8_t>(PduType::kIcResp);
    resp.ch.hlen = kIcPduLen;
    resp.ch.plen.set(kIcPduLen);
    resp.pfv.set(0);
    resp.cpda = 0;  // Linux refuses any other CPDA
    resp.dgst = req.dgst & (kDigestHeader | kDigestData);  // echoed exactly, as Linux checks
    resp.maxh2cdata.set(opts_.max_h2c_data);
    std::memcpy(e.hdr, &resp, sizeof(resp));
}

void TcpConnection::HandleCapsuleHeader() {
    TcpRequest* r = AllocRequest();
    if (!r) {
        return Fatal(PduError{Fes::kPduSequenceError, 0,
                              "more commands outstanding than the connection allows"});
    }
    std::memcpy(r->sqe.b, hdr_ + offsetof(CapsuleCmdPdu, sqe), sizeof(r->sqe.b));
    r->cid = Load16(r->sqe.b + kSqeCid);
    SetState(r, RequestState::kNew);
    if (cur_.data_len == 0) return StartCommand(r);
    // In-capsule data is bounded by max_in_capsule_data per slot: exempt from the budget.
    (void)AcquireBuffer(r, cur_.data_len, true);
    data_dst_ = r->buf.get();
    cur_req_ = r;
}

void TcpConnection::HandleH2CDataHeader() {
    DataPdu d;
    std::memcpy(&d, hdr_, sizeof(d));
    const uint16_t ttag = d.ttag.get();
    if (ttag >= slots_.size() || slots_[ttag]->state != RequestState::kAwaitingR2tData)
        return Fatal(PduError{Fes::kInvalidHeaderField, offsetof(DataPdu, ttag),
                              "H2CData for a transfer tag with no R2T outstanding"});
    TcpRequest* r = slots_[ttag].get();
    if (d.cccid.get() != r->cid)
        return Fatal(PduError{Fes::kInvalidHeaderField, offsetof(DataPdu, cccid),
                              "H2CData CCCID does not match the R2T"});
    const uint64_t datao = d.datao.get();
    const uint64_t end = datao + cur_.data_len;
    if (datao != r->h2c_next || end > r->r2t_end)
        return Fatal(PduError{Fes::kDataOutOfRange, 0, "H2CData outside the solicited range"});
    const bool last = (cur_.flags & kFlagDataLast) != 0;
    if (last != (end == r->r2t_end))
        return Fatal(PduError{Fes::kInvalidHeaderField, kFeiFlags,
                              "H2CData LAST flag not on the R2T's final PDU"});
    data_dst_ = r->buf.get() + datao;
    cur_req_ = r;
}

void TcpConnection::Fatal(const PduError& e) {
    if (rx_ == RxState::kDead) return;
    Log(std::string("fatal PDU error (FES ") + std::to_string(static_cast<int>(e.fes)) +
        "): " + e.reason);
    rx_ = RxState::kDead;
    QueueTermReq(e);
    close_mode_ = CloseMode::kAfterFlush;
}

// ---------------------------------------------------------------------------------------------
// Request flow

TcpRequest* TcpConnection::AllocRequest() {
    if (free_slots_.empty()) return nullptr;
    TcpRequest* r = slots_[free_slots_.back()].get();
    free_slots_.pop_back();
    r->dir = Direction::kNone;
    r->len = r->icd_len = r->r2t_end = r->h2c_next = 0;
    r->digest_error = false;
    return r;
}

void TcpConnection::SetState(TcpRequest* r, RequestState s) {
    if (r->state != RequestState::kFree)
        stats_->requests_in_state[static_cast<size_t>(r->state)].fetch_sub(
            1, std::memory_order_relaxed);
    if (s != RequestState::kFree)
        stats_->requests_in_state[static_cast<size_t>(s)].fetch_add(1, std::memory_order_relaxed);
    r->state = s;
}

void TcpConnection::StartCommand(TcpRequest* r) {
    TcpStats::Add(stats_->commands);
    const uint8_t* s = r->sqe.b;
    if ((s[kSqeFlags] >> 6) != kPsdtSgl) return CompleteLocally(r, 0, kScInvalidField, true);
    if (r->digest_error) return CompleteLocally(r, 0, kScTransientTransportError, false);
    const uint8_t id = s[kSqeSglId];
    const uint8_t type = id >> 4, subtype = id & 0xf;
    const uint64_t addr = Load64(s + kSqeSglAddr);
    const uint32_t len = Load32(s + kSqeSglLen);
    const Direction dir = DirectionOf(r->sqe);

    if (type == kSglDataBlock && subtype == kSglSubOffset) {
        // In-capsule data; the address is the offset into it (ICDOFF = 0).
        if (dir == Direction::kC2H || dir == Direction::kBidi)
            return CompleteLocally(r, 0, kScSglDescriptorTypeInvalid, true);
        if (addr > r->icd_len) return CompleteLocally(r, 0, kScSglOffsetInvalid, true);
        if (addr + len > r->icd_len) return CompleteLocally(r, 0, kScDataSglLengthInvalid, true);
        r->dir = len ? Direction::kH2C : Direction::kNone;
        r->len = len;
        return Submit(r, len ? std::span<uint8_t>(r->buf.get() + addr, len)
                             : std::span<uint8_t>());
    }
    if (type == kSglTransportDataBlock && subtype == kSglSubTransport) {
        if (r->icd_len != 0) return CompleteLocally(r, 0, kScDataSglLengthInvalid, true);
        if (len == 0) return Submit(r, {});
        if (len > opts_.max_transfer) return CompleteLocally(r, 0, kScDataSglLengthInvalid, true);
        if (dir != Direction::kH2C && dir != Direction::kC2H)
            return CompleteLocally(r, 0, kScInvalidField, true);
        r->dir = dir;
        r->len = len;
        if (buffer_waiters_head_ < buffer_waiters_.size()) {
            // Others wait for buffers already: queue behind them (FIFO, no starvation).
            SetState(r, RequestState::kNeedBuffer);
            buffer_waiters_.push_back(r->slot);
            return;
        }
        return ContinueWithBuffer(r);
    }
    return CompleteLocally(r, 0, kScSglDescriptorTypeInvalid, true);
}

void TcpConnection::ContinueWithBuffer(TcpRequest* r) {
    if (!AcquireBuffer(r, r->len, false)) {
        if (r->state != RequestState::kNeedBuffer) {
            SetState(r, RequestState::kNeedBuffer);
            buffer_waiters_.push_back(r->slot);
        }
        return;
    }
    if (r->dir == Direction::kH2C) {
        r->h2c_next = 0;
        r->r2t_end = 0;
        return SendR2t(r);
    }
    std::memset(r->buf.get(), 0, r->len);  // the seam promises a zeroed C2H buffer
    Submit(r, {r->buf.get(), r->len});
}

bool TcpConnection::AcquireBuffer(TcpRequest* r, uint32_t len, bool exempt) {
    if (r->cap >= len) return true;
    uint64_t after = buffer_bytes_ - r->cap + len;
    if (!exempt && after > opts_.max_buffer_bytes) {
        // Give back buffers idle slots keep for reuse before making anyone wait.
        for (auto& s : slots_) {
            if (after <= opts_.max_buffer_bytes) break;
            if (s->state != RequestState::kFree || s->cap == 0) continue;
            buffer_bytes_ -= s->cap;
            after -= s->cap;
            s->buf.reset();
            s->cap = 0;
        }
        if (after > opts_.max_buffer_bytes) {
            AccountMemory();
            return false;
        }
    }
    buffer_bytes_ -= r->cap;
    r->buf.reset(new uint8_t[len]);
    r->cap = len;
    buffer_bytes_ += len;
    AccountMemory();
    return true;
}

void TcpConnection::ReleaseBuffer(TcpRequest* r) {
    if (r->cap <= opts_.retain_buffer_bytes) return;
    buffer_bytes_ -= r->cap;
    r->buf.reset();
    r->cap = 0;
    AccountMemory();
}

void TcpConnection::ReleaseRequest(TcpRequest* r) {
    ReleaseBuffer(r);
    SetState(r, RequestState::kFree);
    r->gen++;
    free_slots_.push_back(r->slot);
    ServeBufferWaiters();
}

void TcpConnection::ServeBufferWaiters() {
    while (!shut_down_ && close_mode_ == CloseMode::kNone &&
           buffer_waiters_head_ < buffer_waiters_.size()) {
        TcpRequest* r = slots_[buffer_waiters_[buffer_waiters_head_]].get();
        if (!AcquireBuffer(r, r->len, false)) return;
        buffer_waiters_head_++;
        if (buffer_waiters_head_ == buffer_waiters_.size()) {
            buffer_waiters_.clear();
            buffer_waiters_head_ = 0;
        }
        ContinueWithBuffer(r);
    }
}

void TcpConnection::SendR2t(TcpRequest* r) {
    uint32_t off = r->h2c_next;
    uint32_t left = r->len - off;
    uint32_t n = opts_.max_r2t_length ? std::min(left, opts_.max_r2t_length) : left;
    r->r2t_end = off + n;
    SetState(r, RequestState::kAwaitingR2tData);
    TcpStats::Add(stats_->r2ts);
    TxEntry& e = PushTx();
    InitHeader(e, PduType::kR2T, kR2tHlen, 0, false);
    R2tPdu* p = reinterpret_cast<R2tPdu*>(e.hdr);
    p->cccid.set(r->cid);
    p->ttag.set(r->slot);
    p->r2to.set(off);
    p->r2tl.set(n);
    if (e.hdgst) StoreDigest(e.hdr + e.hlen, DigestOf(e.hdr, e.hlen));
}

void TcpConnection::Submit(TcpRequest* r, std::span<uint8_t> data) {
    SetState(r, RequestState::kExecuting);
    in_flight_++;
    // Two words of capture: fits std::function's small buffer, no allocation per command.
    queue_->Submit(r->sqe, data, [r, gen = r->gen](const nvme::CqeBytes& cqe, uint32_t len) {
        r->conn->mailbox_->PostCompletion(r, gen, cqe, len);
    });
}

void TcpConnection::OnCompletion(TcpRequest* r, uint32_t gen, const nvme::CqeBytes& cqe,
                                 uint32_t len) {
    if (r->gen != gen || r->state != RequestState::kExecuting) {
        Log("ignoring a second or stale completion (target bug)");
        return;
    }
    in_flight_--;
    if (shut_down_ || close_mode_ != CloseMode::kNone) return ReleaseRequest(r);
    QueueResponse(r, cqe, len);
}

void TcpConnection::CompleteLocally(TcpRequest* r, uint8_t sct, uint8_t sc, bool dnr) {
    TcpStats::Add(stats_->transport_errors);
    nvme::CqeBytes cqe{};
    uint16_t status = static_cast<uint16_t>((sc << 1) | ((sct & 7) << 9) | (dnr ? 0x8000 : 0));
    Store16(cqe.b + kCqeStatus, status);
    r->dir = Direction::kNone;
    QueueResponse(r, cqe, 0);
}

void TcpConnection::QueueResponse(TcpRequest* r, const nvme::CqeBytes& cqe_in, uint32_t c2h_len) {
    nvme::CqeBytes cqe = cqe_in;
    Store16(cqe.b + kCqeCid, r->cid);  // the command's CID, whatever the target wrote
    if (r->dir == Direction::kC2H && c2h_len > 0) {
        c2h_len = std::min(c2h_len, r->len);
        // SUCCESS replaces the CapsuleResp only when it would say nothing else: success status
        // and no command-specific result, and (Linux "short data-in") the full length.
        const bool success = opts_.c2h_success_optimization &&
                             (Load16(cqe.b + kCqeStatus) & 0xfffe) == 0 &&
                             Load32(cqe.b + kCqeDw0) == 0 && Load32(cqe.b + kCqeDw1) == 0 &&
                             c2h_len == r->len;
        SetState(r, RequestState::kTransferringC2h);
        for (uint32_t off = 0; off < c2h_len;) {
            uint32_t n = std::min(c2h_len - off, opts_.max_c2h_data);
            bool last = off + n == c2h_len;
            TxEntry& e = PushTx();
            InitHeader(e, PduType::kC2HData, kDataHlen, n, true);
            DataPdu* p = reinterpret_cast<DataPdu*>(e.hdr);
            p->cccid.set(r->cid);
            p->datao.set(off);
            p->datal.set(n);
            if (last) p->ch.flags |= kFlagDataLast | (success ? kFlagDataSuccess : 0);
            if (e.hdgst) StoreDigest(e.hdr + e.hlen, DigestOf(e.hdr, e.hlen));
            e.data = r->buf.get() + off;
            if (e.ddgst_len) StoreDigest(e.ddgst, Crc32c(e.data, n));
            off += n;
            if (last && success) e.release_slot = r->slot;
        }
        if (success) {
            TcpStats::Add(stats_->c2h_success);
            return;
        }
    } else {
        SetState(r, RequestState::kCompleted);
    }
    TxEntry& e = PushTx();
    InitHeader(e, PduType::kCapsuleResp, kCapsuleRespHlen, 0, false);
    std::memcpy(e.hdr + offsetof(CapsuleRespPdu, cqe), cqe.b, sizeof(cqe.b));
    if (e.hdgst) StoreDigest(e.hdr + e.hlen, DigestOf(e.hdr, e.hlen));
    e.release_slot = r->slot;
}

// ---------------------------------------------------------------------------------------------
// Transmit path

TcpConnection::TxEntry& TcpConnection::PushTx() {
    if (tx_count_ == tx_.size()) {
        // Grow the ring, unrolling it so the head is at index 0.
        std::vector<TxEntry> bigger(tx_.size() * 2);
        for (size_t i = 0; i < tx_count_; i++) bigger[i] = tx_[(tx_head_ + i) % tx_.size()];
        tx_.swap(bigger);
        tx_head_ = 0;
        AccountMemory();
    }
    TxEntry& e = tx_[(tx_head_ + tx_count_) % tx_.size()];
    tx_count_++;
    e = TxEntry{};
    std::memset(e.hdr, 0, sizeof(e.hdr));
    return e;
}

// Common header of a controller PDU. Digests only on the negotiated PDU types; data starts at
// PDO aligned to the host's HPDA ((HPDA + 1) dwords); the caller fills the type-specific fields
// and then stores the header digest.
void TcpConnection::InitHeader(TxEntry& e, PduType type, uint8_t hlen, uint32_t data_len,
                               bool data_pdu) {
    e.hlen = hlen;
    e.hdgst = ctx_.hdgst;
    uint32_t header = hlen + (e.hdgst ? kDigestLen : 0);
    uint32_t pdo = 0;
    if (data_pdu && data_len) {
        uint32_t align = (hpda_ + 1u) * 4u;
        pdo = (header + align - 1) / align * align;
        e.ddgst_len = ctx_.ddgst ? kDigestLen : 0;
    }
    e.hdr_len = static_cast<uint16_t>(pdo ? pdo : header);
    e.data_len = data_len;
    PduCommonHeader* ch = reinterpret_cast<PduCommonHeader*>(e.hdr);
    ch->type = static_cast<uint8_t>(type);
    ch->flags = static_cast<uint8_t>((e.hdgst ? kFlagHdgst : 0) | (e.ddgst_len ? kFlagDdgst : 0));
    ch->hlen = hlen;
    ch->pdo = static_cast<uint8_t>(pdo);
    ch->plen.set(e.hdr_len + data_len + e.ddgst_len);
}

void TcpConnection::QueueTermReq(const PduError& err) {
    TcpStats::Add(stats_->term_reqs_sent);
    TxEntry& e = PushTx();
    uint32_t copy = std::min<uint32_t>(hdr_have_, kTermReqMaxData);
    TermReqPdu* t = reinterpret_cast<TermReqPdu*>(e.hdr);
    t->ch.type = static_cast<uint8_t>(PduType::kC2HTermReq);
    t->ch.hlen = kTermReqHlen;
    t->ch.plen.set(kTermReqHlen + copy);  // no digests on TermReq PDUs
    t->fes.set(static_cast<uint16_t>(err.fes));
    t->fei.set(err.fei);
    std::memcpy(e.hdr + kTermReqHlen, hdr_, copy);
    e.hlen = kTermReqHlen;
    e.hdr_len = static_cast<uint16_t>(kTermReqHlen + copy);
}

int TcpConnection::GatherOutput(struct iovec* iov, int max_iov) const {
    int n = 0;
    size_t skip = tx_head_sent_;
    for (size_t i = 0; i < tx_count_ && n + 3 <= max_iov; i++) {
        const TxEntry& e = tx_[(tx_head_ + i) % tx_.size()];
        auto add = [&](const uint8_t* p, size_t len) {
            if (skip >= len) {
                skip -= len;
                return;
            }
            iov[n].iov_base = const_cast<uint8_t*>(p + skip);
            iov[n].iov_len = len - skip;
            skip = 0;
            n++;
        };
        add(e.hdr, e.hdr_len);
        if (e.data_len) add(e.data, e.data_len);
        if (e.ddgst_len) add(e.ddgst, e.ddgst_len);
    }
    return n;
}

void TcpConnection::ConsumeOutput(size_t n) {
    TcpStats::Add(stats_->bytes_tx, n);
    while (n > 0 && tx_count_ > 0) {
        const TxEntry& e = tx_[tx_head_];
        size_t left = e.total() - tx_head_sent_;
        if (n < left) {
            tx_head_sent_ += n;
            return;
        }
        n -= left;
        uint16_t release = e.release_slot;
        tx_head_ = (tx_head_ + 1) % tx_.size();
        tx_count_--;
        tx_head_sent_ = 0;
        TcpStats::Add(stats_->pdus_tx);
        if (release != kNoSlot) ReleaseRequest(slots_[release].get());  // may queue more
    }
}

}  // namespace qzns::nvmf::tcp
