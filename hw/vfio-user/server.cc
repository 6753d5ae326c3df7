#include "hw/vfio-user/server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <iterator>
#include <cstring>

#include "util/json.h"
#include "util/unix-socket.h"

namespace qzns::vfu {

namespace {

constexpr size_t kHdr = sizeof(MsgHeader);

Status Errno(int e, const std::string& what) { return Status::Error(e, what); }

// An error reply: the header only, with kFlagError and the errno.
Result<std::optional<OutMessage>> ErrorReply(int err, const std::string& /*why*/) {
    OutMessage r;
    r.hdr.flags.set(kFlagTypeReply | kFlagError);
    r.hdr.error.set(static_cast<uint32_t>(err));
    return std::optional<OutMessage>(std::move(r));
}

OutMessage EmptyReply() {
    OutMessage r;
    r.hdr.flags.set(kFlagTypeReply);
    return r;
}

std::string Hex(uint64_t v) {
    char buf[24];
    snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

// A protocol violation after which the stream cannot be trusted.
Status Violation(const std::string& what) { return Status::Error(EPROTO, what); }

}  // namespace

VfioUserServer::VfioUserServer(VfioUserDevice* device, ServerOptions options)
    : device_(device),
      opts_(std::move(options)),
      dma_(opts_.max_dma_maps, this),
      irq_fds_(device->num_irqs()) {
    stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
}

VfioUserServer::~VfioUserServer() {
    DropClient();
    if (!listen_path_.empty()) ::unlink(listen_path_.c_str());
}

void VfioUserServer::Trace(const char* dir, const MsgHeader& h, const std::string& extra) {
    if (!opts_.trace) return;
    char buf[160];
    snprintf(buf, sizeof(buf), "%s %-24s id=%u size=%u flags=0x%x err=%u", dir,
             CommandName(h.command.get()), h.msg_id.get(), h.msg_size.get(), h.flags.get(),
             h.error.get());
    opts_.trace(std::string(buf) + (extra.empty() ? "" : " " + extra));
}

Status VfioUserServer::Listen(const std::string& path) {
    sockaddr_un sa{};
    if (path.size() >= sizeof(sa.sun_path)) return Errno(ENAMETOOLONG, "socket path too long");
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return Errno(errno, "socket: " + std::string(std::strerror(errno)));
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    {
        // Only a socket nobody accepts on is stale; never unlink a live server's socket.
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (probe.valid() &&
            ::connect(probe.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0)
            return Errno(EADDRINUSE, path + " is in use by another server");
    }
    QZNS_TRY(RestrictSocketToOwner(fd.get(), path));
    ::unlink(path.c_str());
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0)
        return Errno(errno, "bind " + path + ": " + std::strerror(errno));
    if (::listen(fd.get(), 1) != 0) return Errno(errno, "listen: " + std::string(std::strerror(errno)));
    listen_fd_ = std::move(fd);
    listen_path_ = path;
    return Status::Ok();
}

Status VfioUserServer::Run() {
    if (!listen_fd_.valid()) return Errno(EINVAL, "Run() before Listen()");
    while (!stop_) {
        pollfd p[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
        if (::poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return Errno(errno, "poll: " + std::string(std::strerror(errno)));
        }
        if (stop_) break;
        if (!(p[0].revents & POLLIN)) continue;
        UniqueFd conn(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!conn.valid()) continue;
        Status st = ServeConnection(std::move(conn));
        if (!st.ok() && opts_.trace) opts_.trace("connection closed: " + st.message());
    }
    return Status::Ok();
}

void VfioUserServer::Stop() {
    stop_ = true;
    uint64_t one = 1;
    if (::write(stop_fd_.get(), &one, sizeof(one)) < 0) {
        // The eventfd counter cannot overflow from one write; nothing to do.
    }
    util::MutexLock lk(conn_mu_);
    if (conn_fd_ >= 0) ::shutdown(conn_fd_, SHUT_RDWR);
}

Status VfioUserServer::Send(OutMessage& msg) {
    util::MutexLock lk(send_mu_);
    int fd;
    {
        util::MutexLock clk(conn_mu_);
        fd = conn_fd_;
    }
    if (fd < 0) return Errno(ENOTCONN, "no client");
    msg.hdr.msg_size.set(static_cast<uint32_t>(kHdr + msg.payload.size()));
    Trace("->", msg.hdr);
    return SendMessage(fd, msg);
}

Status VfioUserServer::ServeConnection(UniqueFd conn) {
    {
        util::MutexLock lk(conn_mu_);
        conn_fd_ = conn.get();
        serve_thread_ = std::this_thread::get_id();
    }
    negotiated_ = false;
    device_->Attach(&dma_, this);
    bool announced = false;  // a client counts as connected once VERSION is negotiated
    size_t max_size = kHdr + 64 + std::max<size_t>(opts_.max_data_xfer_size, 4096);
    Status result;
    while (!stop_) {
        Message m;
        if (!deferred_.empty()) {
            m = std::move(deferred_.front());
            deferred_.pop_front();
        } else {
            // A negative fd (no listening socket: socketpair tests) is ignored by poll.
            pollfd p[3] = {{conn.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0},
                           {listen_fd_.valid() ? listen_fd_.get() : -1, POLLIN, 0}};
            if (::poll(p, 3, -1) < 0) {
                if (errno == EINTR) continue;
                result = Errno(errno, "poll failed");
                break;
            }
            if (stop_) break;
            if (p[2].revents & POLLIN) {
                // One client at a time: a second one is closed before VERSION, so its QEMU
                // fails at once instead of hanging in the backlog until this client leaves.
                UniqueFd extra(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
                if (extra.valid()) {
                    stats_.clients_refused++;
                    if (opts_.trace) opts_.trace("refused a second client while one is served");
                    if (opts_.on_refused) opts_.on_refused();
                }
            }
            if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            Status st = RecvMessage(conn.get(), max_size, opts_.max_msg_fds, &m);
            if (!st.ok()) {
                if (st.err() != ECONNRESET) {
                    stats_.protocol_closes++;
                    result = st;
                }
                break;
            }
        }
        Trace("<-", m.hdr);
        uint32_t type = m.type();
        if (type == kFlagTypeReply) {
            util::MutexLock lk(wait_mu_);
            auto it = waiters_.find(m.msg_id());
            if (it != waiters_.end()) {
                it->second->reply = std::move(m);
                waiters_.erase(it);
                wait_cv_.NotifyAll();
            }
            continue;  // unsolicited replies are ignored
        }
        if (type != kFlagTypeCommand) {
            stats_.protocol_closes++;
            result = Violation("message type " + std::to_string(type));
            break;
        }
        uint16_t id = m.msg_id();
        uint16_t cmd = m.command();
        bool no_reply = m.no_reply();
        auto r = HandleMessage(m);
        if (!r.ok()) {
            stats_.protocol_closes++;
            result = r.status();
            break;
        }
        if (r->has_value() && !no_reply) {
            OutMessage& out = **r;
            out.hdr.msg_id.set(id);
            out.hdr.command.set(cmd);
            Status st = Send(out);
            if (!st.ok()) {
                result = st;
                break;
            }
        }
        if (!announced && negotiated_) {
            announced = true;
            client_connected_ = true;
            if (opts_.on_client) opts_.on_client(true, "");
        }
    }
    {
        util::MutexLock lk(conn_mu_);
        conn_fd_ = -1;
    }
    {
        util::MutexLock lk(wait_mu_);
        for (auto& [id, w] : waiters_) w->failed = true;
        waiters_.clear();
        wait_cv_.NotifyAll();
    }
    deferred_.clear();
    DropClient();
    client_connected_ = false;
    if (announced && opts_.on_client) opts_.on_client(false, result.ok() ? "" : result.message());
    return result;
}

void VfioUserServer::DropClient() {
    device_->Reset();
    device_->DmaUnmapping(0, UINT64_MAX);
    device_->Attach(nullptr, nullptr);
    dma_.UnmapAll();
    ResetIrqs();
    negotiated_ = false;
}

void VfioUserServer::ResetIrqs() {
    util::MutexLock lk(irq_mu_);
    for (auto& v : irq_fds_) v.clear();
}

Result<std::optional<OutMessage>> VfioUserServer::HandleMessage(Message& m) {
    uint16_t cmd = m.command();
    if (cmd < std::size(stats_.commands)) stats_.commands[cmd]++;
    if (m.type() != kFlagTypeCommand) return Violation("not a command");
    if (m.hdr.msg_size.get() != kHdr + m.payload.size()) return Violation("msg_size mismatch");
    if (!negotiated_ && static_cast<Command>(cmd) != Command::kVersion)
        return Violation(std::string(CommandName(cmd)) + " before VERSION");
    Reply r = [&]() -> Reply {
        switch (static_cast<Command>(cmd)) {
            case Command::kVersion: return HandleVersion(m);
            case Command::kDmaMap: return HandleDmaMap(m);
            case Command::kDmaUnmap: return HandleDmaUnmap(m);
            case Command::kDeviceGetInfo: return HandleGetInfo(m);
            case Command::kDeviceGetRegionInfo: return HandleGetRegionInfo(m);
            case Command::kDeviceGetIrqInfo: return HandleGetIrqInfo(m);
            case Command::kDeviceSetIrqs: return HandleSetIrqs(m);
            case Command::kRegionRead: return HandleRegionRead(m);
            case Command::kRegionWrite: return HandleRegionWrite(m);
            case Command::kRegionWriteMulti: return HandleWriteMulti(m);
            case Command::kDeviceReset: return HandleReset(m);
            case Command::kDmaRead:
            case Command::kDmaWrite: return ErrorReply(EINVAL, "server-to-client command");
            default: return ErrorReply(ENOTSUP, "unsupported command");
        }
    }();
    if (r.ok() && r->has_value() && ((**r).hdr.flags.get() & kFlagError)) {
        if (m.no_reply()) stats_.dropped_errors++;
        else stats_.error_replies++;
        if (opts_.trace)
            opts_.trace(std::string("   error ") + std::to_string((**r).hdr.error.get()) +
                        " for " + CommandName(cmd));
    }
    return r;
}

// ---- VERSION -------------------------------------------------------------------------------

Result<std::optional<OutMessage>> VfioUserServer::HandleVersion(Message& m) {
    if (negotiated_) return ErrorReply(EINVAL, "VERSION twice");
    if (!m.fds.empty()) return ErrorReply(EINVAL, "fds with VERSION");
    VersionPayload v;
    if (!m.Read(&v)) return ErrorReply(EINVAL, "short VERSION");
    if (v.major.get() != kVersionMajor) return ErrorReply(ENOTSUP, "major version");
    std::string_view json(reinterpret_cast<const char*>(m.payload.data()) + sizeof(v),
                          m.payload.size() - sizeof(v));
    if (!json.empty()) {
        size_t nul = json.find('\0');
        if (nul == std::string_view::npos) return ErrorReply(EINVAL, "JSON not NUL-terminated");
        json = json.substr(0, nul);
    }
    uint32_t peer_xfer = 1u << 20, peer_fds = 8;
    if (!json.empty()) {
        Result<Json> parsed = ParseJson(json, 8);
        if (!parsed.ok() || !parsed->is_object()) return ErrorReply(EINVAL, "bad JSON");
        if (const Json* caps = parsed->get("capabilities")) {
            if (!caps->is_object()) return ErrorReply(EINVAL, "capabilities not an object");
            if (const Json* f = caps->get("max_msg_fds")) {
                auto n = f->as_uint64();
                if (!n || *n == 0 || *n > 1024) return ErrorReply(EINVAL, "max_msg_fds");
                peer_fds = static_cast<uint32_t>(*n);
            }
            if (const Json* x = caps->get("max_data_xfer_size")) {
                auto n = x->as_uint64();
                if (!n || *n < 4096 || *n > kMaxDataXferLimit)
                    return ErrorReply(EINVAL, "max_data_xfer_size");
                peer_xfer = static_cast<uint32_t>(*n);
            }
            if (const Json* p = caps->get("pgsizes")) {
                auto n = p->as_uint64();
                if (!n || !(*n & 4096)) return ErrorReply(EINVAL, "pgsizes without 4 KiB");
            }
            if (const Json* w = caps->get("write_multiple"); w && !w->is_bool())
                return ErrorReply(EINVAL, "write_multiple");
            // "migration" is ignored: we do not advertise it, so the client must not use it.
        }
    }
    peer_max_xfer_ = std::min(peer_xfer, opts_.max_data_xfer_size);
    peer_max_fds_ = peer_fds;
    Json caps = Json::MakeObject();
    caps.Set("max_msg_fds", opts_.max_msg_fds);
    caps.Set("max_data_xfer_size", opts_.max_data_xfer_size);
    caps.Set("pgsizes", opts_.pgsizes);
    caps.Set("max_dma_maps", opts_.max_dma_maps);
    if (opts_.write_multiple) caps.Set("write_multiple", true);
    Json root = Json::MakeObject();
    root.Set("capabilities", std::move(caps));
    std::string text = root.Dump();
    OutMessage r = EmptyReply();
    VersionPayload out;
    out.major.set(kVersionMajor);
    out.minor.set(std::min(v.minor.get(), kVersionMinor));
    r.Append(out);
    r.Append(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.c_str()),
                                      text.size() + 1));
    negotiated_ = true;
    if (opts_.trace) opts_.trace("   client caps: " + std::string(json) + " / ours: " + text);
    return std::optional<OutMessage>(std::move(r));
}

// ---- DMA -----------------------------------------------------------------------------------

Result<std::optional<OutMessage>> VfioUserServer::HandleDmaMap(Message& m) {
    DmaMapPayload p;
    if (!m.Read(&p) || p.argsz.get() < sizeof(p)) return ErrorReply(EINVAL, "short DMA_MAP");
    if (m.fds.size() > 1) return ErrorReply(EINVAL, "DMA_MAP with several fds");
    UniqueFd fd;
    if (!m.fds.empty()) fd = std::move(m.fds[0]);
    Status st = dma_.Map(p.addr.get(), p.size.get(), p.offset.get(), p.flags.get(), std::move(fd));
    if (opts_.trace)
        opts_.trace("   DMA_MAP " + Hex(p.addr.get()) + "+" + Hex(p.size.get()) + " off " +
                    Hex(p.offset.get()) + " flags " + Hex(p.flags.get()) +
                    (m.fds.empty() ? " nofd" : " fd") + (st.ok() ? "" : " -> " + st.message()));
    if (!st.ok()) return ErrorReply(st.err(), st.message());
    return std::optional<OutMessage>(EmptyReply());
}

Result<std::optional<OutMessage>> VfioUserServer::HandleDmaUnmap(Message& m) {
    DmaUnmapPayload p;
    if (!m.Read(&p) || p.argsz.get() < sizeof(p)) return ErrorReply(EINVAL, "short DMA_UNMAP");
    if (!m.fds.empty()) return ErrorReply(EINVAL, "fds with DMA_UNMAP");
    uint32_t flags = p.flags.get();
    if (flags & ~kDmaUnmapFlagAll) return ErrorReply(ENOTSUP, "DMA_UNMAP flags");
    if (opts_.trace)
        opts_.trace("   DMA_UNMAP " + Hex(p.addr.get()) + "+" + Hex(p.size.get()) +
                    " flags " + Hex(flags));
    if (flags & kDmaUnmapFlagAll) {
        if (p.addr.get() != 0 || p.size.get() != 0) return ErrorReply(EINVAL, "UNMAP_ALL range");
        device_->DmaUnmapping(0, UINT64_MAX);
        dma_.UnmapAll();
    } else {
        if (p.size.get() == 0) return ErrorReply(EINVAL, "DMA_UNMAP size 0");
        device_->DmaUnmapping(p.addr.get(), p.size.get());
        Status st = dma_.Unmap(p.addr.get(), p.size.get());
        if (!st.ok()) return ErrorReply(st.err(), st.message());
    }
    OutMessage r = EmptyReply();
    r.Append(p);  // libvfio-user echoes the struct; QEMU ignores the payload
    return std::optional<OutMessage>(std::move(r));
}

// ---- Device info ---------------------------------------------------------------------------

Result<std::optional<OutMessage>> VfioUserServer::HandleGetInfo(Message& m) {
    DeviceInfoPayload p;
    if (!m.Read(&p) || p.argsz.get() < sizeof(p)) return ErrorReply(EINVAL, "short GET_INFO");
    if (!m.fds.empty()) return ErrorReply(EINVAL, "fds with GET_INFO");
    DeviceInfoPayload out;
    out.argsz.set(sizeof(out));
    out.flags.set((device_->supports_reset() ? kDeviceFlagReset : 0) |
                  (device_->is_pci() ? kDeviceFlagPci : 0));
    out.num_regions.set(device_->num_regions());
    out.num_irqs.set(device_->num_irqs());
    OutMessage r = EmptyReply();
    r.Append(out);
    return std::optional<OutMessage>(std::move(r));
}

Result<std::optional<OutMessage>> VfioUserServer::HandleGetRegionInfo(Message& m) {
    RegionInfoPayload p;
    if (!m.Read(&p) || p.argsz.get() < sizeof(p)) return ErrorReply(EINVAL, "short REGION_INFO");
    if (!m.fds.empty()) return ErrorReply(EINVAL, "fds with REGION_INFO");
    uint32_t index = p.index.get();
    if (index >= device_->num_regions()) return ErrorReply(EINVAL, "region index");
    RegionDesc d = device_->Region(index);
    RegionInfoPayload out;
    out.index.set(index);
    out.size.set(d.size);
    uint32_t flags = d.size ? d.flags & (kRegionFlagRead | kRegionFlagWrite) : 0;
    std::vector<uint8_t> caps;
    bool mmap = d.size != 0 && d.mmap_fd >= 0;
    if (mmap) {
        flags |= kRegionFlagMmap;
        out.offset.set(d.mmap_offset);
        if (!d.sparse.empty()) {
            SparseMmapCap c;
            c.header.id.set(kRegionInfoCapSparseMmap);
            c.header.version.set(1);
            c.header.next.set(0);
            c.nr_areas.set(static_cast<uint32_t>(d.sparse.size()));
            const auto* cp = reinterpret_cast<const uint8_t*>(&c);
            caps.insert(caps.end(), cp, cp + sizeof(c));
            for (const auto& a : d.sparse) {
                SparseMmapArea area;
                area.offset.set(a.offset);
                area.size.set(a.size);
                const auto* ap = reinterpret_cast<const uint8_t*>(&area);
                caps.insert(caps.end(), ap, ap + sizeof(area));
            }
        }
    }
    uint32_t needed = static_cast<uint32_t>(sizeof(out) + caps.size());
    out.argsz.set(needed);
    bool caps_fit = !caps.empty() && p.argsz.get() >= needed;
    // When the capabilities do not fit, report the size needed without the CAPS flag: QEMU
    // rejects CAPS with a cap_offset outside its buffer, and retries with argsz = needed.
    if (caps_fit) {
        flags |= kRegionFlagCaps;
        out.cap_offset.set(sizeof(out));
    }
    out.flags.set(flags);
    OutMessage r = EmptyReply();
    r.Append(out);
    if (caps_fit) r.Append(std::span<const uint8_t>(caps));
    if (mmap) r.fds.push_back(d.mmap_fd);
    return std::optional<OutMessage>(std::move(r));
}

Result<std::optional<OutMessage>> VfioUserServer::HandleGetIrqInfo(Message& m) {
    IrqInfoPayload p;
    if (!m.Read(&p) || p.argsz.get() < sizeof(p)) return ErrorReply(EINVAL, "short IRQ_INFO");
    if (!m.fds.empty()) return ErrorReply(EINVAL, "fds with IRQ_INFO");
    uint32_t index = p.index.get();
    if (index >= device_->num_irqs()) return ErrorReply(EINVAL, "irq index");
    IrqDesc d = device_->Irq(index);
    IrqInfoPayload out;
    out.argsz.set(sizeof(out));
    out.flags.set(d.flags);
    out.index.set(index);
    out.count.set(d.count);
    OutMessage r = EmptyReply();
    r.Append(out);
    return std::optional<OutMessage>(std::move(r));
}

// ---- Interrupts ----------------------------------------------------------------------------

Result<std::optional<OutMessage>> VfioUserServer::HandleSetIrqs(Message& m) {
    IrqSetPayload p;
    if (!m.Read(&p) || p.argsz.get() < sizeof(p)) return ErrorReply(EINVAL, "short SET_IRQS");
    uint32_t flags = p.flags.get(), index = p.index.get(), start = p.start.get(),
             count = p.count.get();
    uint32_t data = flags & kIrqSetDataTypeMask, action = flags & kIrqSetActionTypeMask;
    if (flags & ~(kIrqSetDataTypeMask | kIrqSetActionTypeMask))
        return ErrorReply(EINVAL, "SET_IRQS flags");
    if (std::popcount(data) != 1 || std::popcount(action) != 1)
        return ErrorReply(EINVAL, "SET_IRQS needs one data type and one action");
    if (index >= device_->num_irqs()) return ErrorReply(EINVAL, "irq index");
    uint32_t irq_count = device_->Irq(index).count;
    if (opts_.trace)
        opts_.trace("   SET_IRQS index " + std::to_string(index) + " start " +
                    std::to_string(start) + " count " + std::to_string(count) + " flags " +
                    Hex(flags) + " fds " + std::to_string(m.fds.size()));
    if (data != kIrqSetDataEventfd && !m.fds.empty())
        return ErrorReply(EINVAL, "fds without DATA_EVENTFD");
    // start = count = 0 with DATA_NONE | ACTION_TRIGGER disables the whole index.
    if (count == 0) {
        if (start != 0 || data != kIrqSetDataNone) return ErrorReply(EINVAL, "count 0");
        if (action == kIrqSetActionTrigger) {
            util::MutexLock lk(irq_mu_);
            irq_fds_[index].clear();
        }
        device_->IrqsChanged(index);
        return std::optional<OutMessage>(EmptyReply());
    }
    if (start >= irq_count || count > irq_count - start) return ErrorReply(EINVAL, "irq range");
    if (data == kIrqSetDataBool && m.payload.size() - sizeof(p) < count)
        return ErrorReply(EINVAL, "DATA_BOOL payload short");
    if (data == kIrqSetDataEventfd && !m.fds.empty() && m.fds.size() != count)
        return ErrorReply(EINVAL, "eventfd count != count");
    if (action != kIrqSetActionTrigger) {
        // Masking is emulated by the client (MSI-X table) or needs no state here (INTx
        // unmask: the next Trigger re-asserts). Accept and drop any resample fds.
        return std::optional<OutMessage>(EmptyReply());
    }
    if (data == kIrqSetDataEventfd) {
        util::MutexLock lk(irq_mu_);
        auto& v = irq_fds_[index];
        if (v.size() < start + count) v.resize(start + count);
        for (uint32_t i = 0; i < count; i++)
            v[start + i] = m.fds.empty() ? UniqueFd() : std::move(m.fds[i]);
        while (!v.empty() && !v.back().valid()) v.pop_back();
    } else {
        // DATA_NONE / DATA_BOOL with TRIGGER: fire now (a loopback test of the eventfds).
        for (uint32_t i = 0; i < count; i++) {
            if (data == kIrqSetDataBool && m.payload[sizeof(p) + i] == 0) continue;
            util::MutexLock lk(irq_mu_);
            auto& v = irq_fds_[index];
            if (start + i < v.size() && v[start + i].valid()) {
                uint64_t one = 1;
                if (::write(v[start + i].get(), &one, sizeof(one)) < 0) stats_.irqs_dropped++;
            }
        }
    }
    device_->IrqsChanged(index);
    return std::optional<OutMessage>(EmptyReply());
}

bool VfioUserServer::Trigger(uint32_t vector) {
    util::MutexLock lk(irq_mu_);
    const UniqueFd* fd = nullptr;
    if (irq_fds_.size() > kPciMsixIrqIndex && !irq_fds_[kPciMsixIrqIndex].empty()) {
        auto& v = irq_fds_[kPciMsixIrqIndex];
        if (vector < v.size() && v[vector].valid()) fd = &v[vector];
    } else if (!irq_fds_.empty() && !irq_fds_[kPciIntxIrqIndex].empty()) {
        fd = &irq_fds_[kPciIntxIrqIndex][0];
    }
    if (fd == nullptr || !fd->valid()) {
        stats_.irqs_dropped++;
        return false;
    }
    uint64_t one = 1;
    if (::write(fd->get(), &one, sizeof(one)) != sizeof(one)) {
        stats_.irqs_dropped++;
        return false;
    }
    stats_.irqs_raised++;
    return true;
}

uint32_t VfioUserServer::MsixVectorsEnabled() const {
    util::MutexLock lk(irq_mu_);
    if (irq_fds_.size() <= kPciMsixIrqIndex) return 0;
    uint32_t n = 0;
    for (const auto& fd : irq_fds_[kPciMsixIrqIndex]) n += fd.valid();
    return n;
}

// ---- Region access -------------------------------------------------------------------------

Status VfioUserServer::CheckAccess(uint32_t region, uint64_t offset, uint64_t count,
                                   bool write) const {
    if (region >= device_->num_regions()) return Errno(EINVAL, "region index");
    RegionDesc d = device_->Region(region);
    if (d.size == 0) return Errno(EINVAL, "region absent");
    if (!(d.flags & (write ? kRegionFlagWrite : kRegionFlagRead)))
        return Errno(EPERM, "region access not allowed");
    if (count == 0 || count > opts_.max_data_xfer_size) return Errno(EINVAL, "bad count");
    if (offset >= d.size || count > d.size - offset) return Errno(EINVAL, "out of region");
    return Status::Ok();
}

Result<std::optional<OutMessage>> VfioUserServer::HandleRegionRead(Message& m) {
    RegionAccessPayload p;
    if (!m.Read(&p)) return ErrorReply(EINVAL, "short REGION_READ");
    if (!m.fds.empty()) return ErrorReply(EINVAL, "fds with REGION_READ");
    uint32_t region = p.region.get(), count = p.count.get();
    uint64_t offset = p.offset.get();
    if (opts_.trace)
        opts_.trace("   read  region " + std::to_string(region) + " off " + Hex(offset) + " count " +
                    std::to_string(count));
    Status st = CheckAccess(region, offset, count, false);
    if (!st.ok()) return ErrorReply(st.err(), st.message());
    OutMessage r = EmptyReply();
    r.Append(p);
    r.payload.resize(sizeof(p) + count);
    st = device_->RegionRead(region, offset, std::span<uint8_t>(r.payload.data() + sizeof(p), count));
    if (!st.ok()) return ErrorReply(st.err(), st.message());
    return std::optional<OutMessage>(std::move(r));
}

Result<std::optional<OutMessage>> VfioUserServer::HandleRegionWrite(Message& m) {
    RegionAccessPayload p;
    if (!m.Read(&p)) return ErrorReply(EINVAL, "short REGION_WRITE");
    if (!m.fds.empty()) return ErrorReply(EINVAL, "fds with REGION_WRITE");
    uint32_t region = p.region.get(), count = p.count.get();
    uint64_t offset = p.offset.get();
    if (m.payload.size() - sizeof(p) != count) return ErrorReply(EINVAL, "count != data size");
    if (opts_.trace) {
        uint64_t v = 0;
        std::memcpy(&v, m.payload.data() + sizeof(p), std::min<size_t>(count, 8));
        opts_.trace("   write region " + std::to_string(region) + " off " + Hex(offset) +
                    " count " + std::to_string(count) + " value " + Hex(v) +
                    (m.no_reply() ? " (posted)" : ""));
    }
    Status st = CheckAccess(region, offset, count, true);
    if (!st.ok()) return ErrorReply(st.err(), st.message());
    st = device_->RegionWrite(region, offset,
                              std::span<const uint8_t>(m.payload.data() + sizeof(p), count));
    if (!st.ok()) return ErrorReply(st.err(), st.message());
    OutMessage r = EmptyReply();
    r.Append(p);
    return std::optional<OutMessage>(std::move(r));
}

Result<std::optional<OutMessage>> VfioUserServer::HandleWriteMulti(Message& m) {
    if (!opts_.write_multiple) return ErrorReply(ENOTSUP, "write_multiple not advertised");
    le64 wr_cnt;
    if (!m.Read(&wr_cnt)) return ErrorReply(EINVAL, "short WRITE_MULTI");
    if (!m.fds.empty()) return ErrorReply(EINVAL, "fds with WRITE_MULTI");
    uint64_t n = wr_cnt.get();
    if (n == 0 || n > kWriteMultiMax ||
        m.payload.size() != sizeof(wr_cnt) + n * sizeof(WriteMultiEntry))
        return ErrorReply(EINVAL, "WRITE_MULTI size");
    for (uint64_t i = 0; i < n; i++) {
        WriteMultiEntry e;
        if (!m.Read(&e, sizeof(wr_cnt) + i * sizeof(e))) return ErrorReply(EINVAL, "short entry");
        uint32_t count = e.count.get();
        if (count > sizeof(e.data)) return ErrorReply(EINVAL, "WRITE_MULTI entry count");
        Status st = CheckAccess(e.region.get(), e.offset.get(), count, true);
        if (st.ok())
            st = device_->RegionWrite(e.region.get(), e.offset.get(),
                                      std::span<const uint8_t>(e.data, count));
        if (!st.ok()) return ErrorReply(st.err(), st.message());
    }
    return std::optional<OutMessage>(EmptyReply());
}

Result<std::optional<OutMessage>> VfioUserServer::HandleReset(Message& m) {
    if (!m.fds.empty()) return ErrorReply(EINVAL, "fds with DEVICE_RESET");
    if (!device_->supports_reset()) return ErrorReply(ENOTSUP, "no reset");
    device_->Reset();
    return std::optional<OutMessage>(EmptyReply());
}

// ---- Server-to-client requests -------------------------------------------------------------

uint32_t VfioUserServer::max_xfer() const { return peer_max_xfer_; }

Result<Message> VfioUserServer::Transact(OutMessage& req) {
    uint16_t id;
    {
        util::MutexLock lk(wait_mu_);
        id = next_msg_id_++;
        if (next_msg_id_ == 0) next_msg_id_ = 0x8000;
    }
    req.hdr.msg_id.set(id);
    req.hdr.flags.set(kFlagTypeCommand);
    int fd;
    bool on_serve_thread;
    {
        util::MutexLock lk(conn_mu_);
        fd = conn_fd_;
        on_serve_thread = serve_thread_ == std::this_thread::get_id();
    }
    if (fd < 0) return Errno(ENOTCONN, "no client");
    if (on_serve_thread) {
        QZNS_TRY(Send(req));
        // We are the thread that reads the socket: read until our reply arrives and keep the
        // commands that come in meanwhile, in order, for the main loop.
        size_t max_size = kHdr + 64 + std::max<size_t>(opts_.max_data_xfer_size, 4096);
        for (;;) {
            pollfd p{fd, POLLIN, 0};
            int r = ::poll(&p, 1, opts_.request_timeout_ms);
            if (r == 0) return Errno(ETIMEDOUT, "no reply from client");
            if (r < 0 && errno != EINTR) return Errno(errno, "poll failed");
            if (r < 0) continue;
            Message m;
            Status st = RecvMessage(fd, max_size, opts_.max_msg_fds, &m);
            if (!st.ok()) {
                ::shutdown(fd, SHUT_RDWR);  // the main loop sees the close next
                return st;
            }
            Trace("<-", m.hdr);
            if (m.type() == kFlagTypeReply) {
                if (m.msg_id() == id) return m;
                continue;
            }
            deferred_.push_back(std::move(m));
            if (deferred_.size() > 4096) return Errno(ENOBUFS, "client floods during DMA");
        }
    }
    Waiter w;
    util::MutexLock lk(wait_mu_);
    waiters_[id] = &w;
    lk.Unlock();
    Status st = Send(req);
    lk.Lock();
    if (!st.ok()) {
        waiters_.erase(id);
        return st;
    }
    bool done = wait_cv_.WaitFor(wait_mu_, std::chrono::milliseconds(opts_.request_timeout_ms),
                                 [&]() REQUIRES(wait_mu_) { return w.reply.has_value() || w.failed; });
    if (!done) {
        waiters_.erase(id);
        return Errno(ETIMEDOUT, "no reply from client");
    }
    if (!w.reply) return Errno(ENOTCONN, "client went away");
    return std::move(*w.reply);
}

Status VfioUserServer::DmaReadMsg(uint64_t addr, void* buf, uint32_t len) {
    OutMessage req;
    req.hdr.command.set(static_cast<uint16_t>(Command::kDmaRead));
    DmaRwPayload p;
    p.addr.set(addr);
    p.count.set(len);
    req.Append(p);
    QZNS_ASSIGN(Message rep, Transact(req));
    if (rep.hdr.flags.get() & kFlagError)
        return Errno(static_cast<int>(rep.hdr.error.get()), "DMA_READ " + Hex(addr) + " failed");
    if (rep.payload.size() < kDmaRwDataOffset + len)
        return Errno(EPROTO, "DMA_READ reply too short");
    std::memcpy(buf, rep.payload.data() + kDmaRwDataOffset, len);
    return Status::Ok();
}

Status VfioUserServer::DmaWriteMsg(uint64_t addr, const void* buf, uint32_t len) {
    OutMessage req;
    req.hdr.command.set(static_cast<uint16_t>(Command::kDmaWrite));
    DmaRwPayload p;
    p.addr.set(addr);
    p.count.set(len);
    req.Append(p);
    req.payload.resize(kDmaRwDataOffset);
    req.Append(std::span<const uint8_t>(static_cast<const uint8_t*>(buf), len));
    if (req.payload.size() < sizeof(DmaRwPayload)) req.payload.resize(sizeof(DmaRwPayload));
    QZNS_ASSIGN(Message rep, Transact(req));
    if (rep.hdr.flags.get() & kFlagError)
        return Errno(static_cast<int>(rep.hdr.error.get()), "DMA_WRITE " + Hex(addr) + " failed");
    return Status::Ok();
}

}  // namespace qzns::vfu
