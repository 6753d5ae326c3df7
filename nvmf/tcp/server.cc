#include "nvmf/tcp/server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <future>
#include <unordered_map>

#include "util/mutex.h"

namespace qzns::nvmf::tcp {

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kTagWake = 0;
constexpr uint64_t kTagListener = 1;
constexpr uint64_t kFirstSessionId = 16;
constexpr size_t kRxBufSize = 64 * 1024;
constexpr size_t kReadBudget = 1024 * 1024;  // per readiness event, for fairness
constexpr size_t kDirectRecvMin = 4096;      // payload at least this large skips the staging copy

std::string FormatAddr(const sockaddr* sa) {
    char host[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (sa->sa_family == AF_INET) {
        auto* in = reinterpret_cast<const sockaddr_in*>(sa);
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        return std::string(host) + ":" + std::to_string(port);
    }
    if (sa->sa_family == AF_INET6) {
        auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        return "[" + std::string(host) + "]:" + std::to_string(port);
    }
    return "?";
}

Status Errno(const std::string& what) { return Status::Error(errno, what + ": " + strerror(errno)); }

// Connections whose commands the target never completed, even after Disconnect and the stop
// timeout: the target may still write into their buffers, so they are parked here for the rest
// of the process instead of being freed (reachable, so leak checkers stay quiet).
void Park(std::unique_ptr<TcpConnection> c) {
    struct Parked {
        util::Mutex mu;
        std::vector<std::unique_ptr<TcpConnection>> conns GUARDED_BY(mu);
    };
    static auto* parked = new Parked();
    util::MutexLock lk(parked->mu);
    parked->conns.push_back(std::move(c));
}

}  // namespace

// One thread, one epoll set, the connections it owns, and the mailbox through which targets
// hand back completions and close requests.
class EventLoop {
public:
    explicit EventLoop(const TcpServerOptions& opts) : opts_(opts) {}
    ~EventLoop();

    Status Init();
    void SetListener(int fd) { listen_fd_ = fd; }
    void SetPeers(std::vector<EventLoop*> loops) { loops_ = std::move(loops); }
    void Start() { thread_ = std::thread([this] { Run(); }); }
    void Join() {
        if (thread_.joinable()) thread_.join();
    }
    void Finish();
    // Any thread.
    void Adopt(int fd, std::string peer) {
        mailbox_->PostTask([this, fd, p = std::move(peer)]() mutable { AdoptNow(fd, std::move(p)); });
    }
    void BeginStop() {
        mailbox_->PostTask([this] { StopNow(); });
    }
    void PostTask(std::function<void()> t) { mailbox_->PostTask(std::move(t)); }
    void CloseListener();  // loop thread
    const TcpStats& stats() const { return stats_; }
    // Loop thread.
    void AppendRequests(std::vector<TcpRequestInfo>* out) const {
        for (const auto& [id, s] : sessions_) s->conn->AppendRequestInfo(out);
    }

private:
    struct Session {
        uint64_t id = 0;
        int fd = -1;
        std::unique_ptr<TcpConnection> conn;
        uint32_t events = 0;  // epoll interest
        bool dirty = false;
        bool lingering = false;
        Clock::time_point linger_until{};
        Clock::time_point ic_deadline{};  // close if ICReq has not completed by then
    };

    void Run();
    void Log(const std::string& s) const {
        if (opts_.transport.log) opts_.transport.log(s);
    }
    void OnAcceptable();
    void AdoptNow(int fd, std::string peer);
    void StopNow();
    void OnReadable(Session* s);
    void Pump(Session* s);
    void SetEvents(Session* s, uint32_t events);
    void CloseSocket(Session* s);
    void MaybeReap(Session* s);
    Session* Find(uint64_t id) {
        auto it = sessions_.find(id);
        return it == sessions_.end() ? nullptr : it->second.get();
    }
    int NextTimeoutMs();

    const TcpServerOptions& opts_;
    int epfd_ = -1;
    int wake_fd_ = -1;
    int listen_fd_ = -1;
    bool listen_paused_ = false;
    Clock::time_point listen_resume_{};
    std::shared_ptr<CompletionMailbox> mailbox_;
    std::unordered_map<uint64_t, std::unique_ptr<Session>> sessions_;
    std::vector<uint64_t> dirty_;
    std::vector<uint64_t> dirty_scratch_;  // Run(): the round being pumped
    std::vector<uint64_t> lingering_;
    std::vector<uint64_t> handshaking_;  // sessions whose ICReq has not completed
    std::vector<EventLoop*> loops_;
    size_t rr_ = 0;
    uint64_t next_id_ = kFirstSessionId;
    bool stopping_ = false;
    bool finished_ = false;
    Clock::time_point stop_deadline_{};
    std::vector<uint8_t> rxbuf_;
    TcpStats stats_;
    std::thread thread_;
};

EventLoop::~EventLoop() {
    Finish();
    if (wake_fd_ >= 0) close(wake_fd_);
    if (epfd_ >= 0) close(epfd_);
}

// After the thread has stopped: late completions are dropped from now on; connections whose
// commands the target never completed are leaked on purpose.
void EventLoop::Finish() {
    Join();
    if (finished_) return;
    finished_ = true;
    if (mailbox_) mailbox_->Detach();
    size_t leaked = 0;
    for (auto& [id, s] : sessions_) {
        if (s->fd >= 0) close(s->fd);
        s->fd = -1;
        s->conn->Shutdown();
        if (!s->conn->Idle()) {
            // Its late completions are dropped by the detached mailbox.
            Park(std::move(s->conn));
            leaked++;
        }
    }
    if (leaked) Log("nvme-tcp: " + std::to_string(leaked) +
                    " connection(s) with commands the target never completed; parked, not freed");
    sessions_.clear();
    if (listen_fd_ >= 0) close(listen_fd_);
    listen_fd_ = -1;
}

Status EventLoop::Init() {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) return Errno("epoll_create1");
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) return Errno("eventfd");
    int wfd = wake_fd_;
    mailbox_ = std::make_shared<CompletionMailbox>([wfd] {
        uint64_t one = 1;
        ssize_t r = write(wfd, &one, sizeof(one));
        (void)r;
    });
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kTagWake;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_fd_, &ev) < 0) return Errno("epoll_ctl(eventfd)");
    if (listen_fd_ >= 0) {
        ev.events = EPOLLIN;
        ev.data.u64 = kTagListener;
        if (epoll_ctl(epfd_, EPOLL_CTL_ADD, listen_fd_, &ev) < 0)
            return Errno("epoll_ctl(listener)");
    }
    rxbuf_.resize(kRxBufSize);
    return Status::Ok();
}

int EventLoop::NextTimeoutMs() {
    Clock::time_point next = Clock::time_point::max();
    if (stopping_) next = stop_deadline_;
    if (listen_paused_) next = std::min(next, listen_resume_);
    for (uint64_t id : lingering_) {
        if (Session* s = Find(id); s && s->lingering) next = std::min(next, s->linger_until);
    }
    for (uint64_t id : handshaking_) {
        if (Session* s = Find(id); s && s->fd >= 0 && !s->conn->ic_done()) next = std::min(next, s->ic_deadline);
    }
    if (next == Clock::time_point::max()) return -1;
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now()).count();
    return static_cast<int>(std::clamp<int64_t>(ms, 0, 60000));
}

void EventLoop::Run() {
    mailbox_->SetOwnerThread(std::this_thread::get_id());
    auto touched = [this](TcpConnection* c) {
        auto* s = static_cast<Session*>(c->owner);
        if (!s->dirty) {
            s->dirty = true;
            dirty_.push_back(s->id);
        }
    };
    epoll_event events[64];
    for (;;) {
        // Work queued by this thread (inline completions, tasks) first, then sleep.
        mailbox_->Drain(touched);
        while (!dirty_.empty()) {
            // Two vectors that trade places keep their capacity: no allocation per round.
            std::vector<uint64_t>& ids = dirty_scratch_;
            ids.clear();
            ids.swap(dirty_);
            for (uint64_t id : ids) {
                if (Session* s = Find(id)) {
                    s->dirty = false;
                    Pump(s);
                }
            }
            mailbox_->Drain(touched);
        }
        if (stopping_ && (sessions_.empty() || Clock::now() >= stop_deadline_)) break;

        int n = epoll_wait(epfd_, events, 64, NextTimeoutMs());
        if (n < 0 && errno != EINTR) {
            Log(std::string("nvme-tcp: epoll_wait: ") + strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            const uint64_t tag = events[i].data.u64;
            if (tag == kTagWake) {
                uint64_t v;
                ssize_t r = read(wake_fd_, &v, sizeof(v));
                (void)r;
                continue;
            }
            if (tag == kTagListener) {
                OnAcceptable();
                continue;
            }
            Session* s = Find(tag);
            if (!s || s->fd < 0) continue;
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) OnReadable(s);
            s = Find(tag);
            if (s && s->fd >= 0 && (events[i].events & EPOLLOUT)) Pump(s);
        }
        // Timers: lingering after C2HTermReq, ICReq not sent in time, paused listener.
        const auto now = Clock::now();
        for (size_t i = 0; i < lingering_.size();) {
            Session* s = Find(lingering_[i]);
            if (s && s->lingering && now < s->linger_until) {
                i++;
                continue;
            }
            if (s && s->lingering && s->fd >= 0) {
                Log("nvme-tcp " + s->conn->peer() + ": C2HTermReq not flushed in time; closing");
                CloseSocket(s);
            }
            lingering_[i] = lingering_.back();
            lingering_.pop_back();
        }
        for (size_t i = 0; i < handshaking_.size();) {
            Session* s = Find(handshaking_[i]);
            bool pending = s && s->fd >= 0 && !s->conn->ic_done();
            if (pending && now < s->ic_deadline) {
                i++;
                continue;
            }
            if (pending) {
                Log("nvme-tcp " + s->conn->peer() + ": no ICReq within " + std::to_string(opts_.icreq_timeout.count()) +
                    " ms; closing");
                CloseSocket(s);
            }
            handshaking_[i] = handshaking_.back();
            handshaking_.pop_back();
        }
        if (listen_paused_ && now >= listen_resume_ && listen_fd_ >= 0) {
            listen_paused_ = false;
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.u64 = kTagListener;
            epoll_ctl(epfd_, EPOLL_CTL_MOD, listen_fd_, &ev);
        }
    }
}

void EventLoop::OnAcceptable() {
    while (listen_fd_ >= 0) {
        sockaddr_storage ss{};
        socklen_t len = sizeof(ss);
        int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR || errno == ECONNABORTED) continue;
            // Out of descriptors or memory: stop polling the listener for a moment instead of
            // spinning on a level-triggered event we cannot clear.
            Log(std::string("nvme-tcp: accept: ") + strerror(errno));
            epoll_event ev{};
            ev.data.u64 = kTagListener;
            epoll_ctl(epfd_, EPOLL_CTL_MOD, listen_fd_, &ev);
            listen_paused_ = true;
            listen_resume_ = Clock::now() + std::chrono::milliseconds(100);
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        std::string peer = FormatAddr(reinterpret_cast<sockaddr*>(&ss));
        EventLoop* dst = loops_.empty() ? this : loops_[rr_++ % loops_.size()];
        if (dst == this)
            AdoptNow(fd, std::move(peer));
        else
            dst->Adopt(fd, std::move(peer));
    }
}

void EventLoop::AdoptNow(int fd, std::string peer) {
    if (stopping_) {
        close(fd);
        return;
    }
    std::unique_ptr<nvme::FabricsQueue> queue = opts_.target->NewQueue(peer);
    if (!queue) {
        Log("nvme-tcp " + peer + ": target refused the connection");
        close(fd);
        return;
    }
    const uint64_t id = next_id_++;
    auto s = std::make_unique<Session>();
    s->id = id;
    s->fd = fd;
    std::weak_ptr<CompletionMailbox> mb = mailbox_;
    auto close_request = [mb, this, id] {
        if (auto m = mb.lock()) m->PostTask([this, id] {
            if (Session* s = Find(id); s && s->fd >= 0) CloseSocket(s);
        });
    };
    s->conn = std::make_unique<TcpConnection>(std::move(queue), opts_.transport, mailbox_, &stats_,
                                              std::move(peer), std::move(close_request));
    s->conn->owner = s.get();
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = id;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
        Log(std::string("nvme-tcp: epoll_ctl: ") + strerror(errno));
        close(fd);
        s->fd = -1;
        s->conn->Shutdown();
        if (!s->conn->Idle()) sessions_.emplace(id, std::move(s));
        return;
    }
    s->events = EPOLLIN;
    s->ic_deadline = Clock::now() + opts_.icreq_timeout;
    handshaking_.push_back(id);
    TcpStats::Add(stats_.connections_accepted);
    sessions_.emplace(id, std::move(s));
}

void EventLoop::CloseListener() {
    if (listen_fd_ < 0) return;
    epoll_ctl(epfd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
    close(listen_fd_);
    listen_fd_ = -1;
    listen_paused_ = false;
}

void EventLoop::StopNow() {
    if (stopping_) return;
    stopping_ = true;
    stop_deadline_ = Clock::now() + opts_.stop_timeout;
    CloseListener();
    std::vector<uint64_t> ids;
    for (auto& [id, s] : sessions_) ids.push_back(id);
    for (uint64_t id : ids) {
        if (Session* s = Find(id); s && s->fd >= 0) CloseSocket(s);
    }
}

void EventLoop::OnReadable(Session* s) {
    TcpConnection* c = s->conn.get();
    size_t budget = kReadBudget;
    while (budget > 0 && c->close_mode() == TcpConnection::CloseMode::kNone && !c->shut_down()) {
        std::span<uint8_t> sink = c->DirectDataSink();
        ssize_t r;
        if (sink.size() >= kDirectRecvMin) {
            r = recv(s->fd, sink.data(), std::min(sink.size(), budget), 0);
            if (r > 0) c->DirectDataReceived(static_cast<size_t>(r));
        } else {
            r = recv(s->fd, rxbuf_.data(), std::min(rxbuf_.size(), budget), 0);
            if (r > 0) c->Feed(rxbuf_.data(), static_cast<size_t>(r));
        }
        if (r == 0) return CloseSocket(s);  // host closed
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return CloseSocket(s);
        }
        budget -= static_cast<size_t>(r);
    }
    Pump(s);
}

// Sends what the connection has queued and applies its close mode.
void EventLoop::Pump(Session* s) {
    if (s->fd < 0) return MaybeReap(s);
    TcpConnection* c = s->conn.get();
    if (c->close_mode() == TcpConnection::CloseMode::kNow) return CloseSocket(s);
    while (c->HasOutput()) {
        iovec iov[64];
        int n = c->GatherOutput(iov, 64);
        msghdr m{};
        m.msg_iov = iov;
        m.msg_iovlen = static_cast<size_t>(n);
        ssize_t w = sendmsg(s->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return CloseSocket(s);
        }
        c->ConsumeOutput(static_cast<size_t>(w));
    }
    const bool pending = c->HasOutput();
    if (c->close_mode() == TcpConnection::CloseMode::kAfterFlush) {
        if (!pending) return CloseSocket(s);
        if (!s->lingering) {
            s->lingering = true;
            s->linger_until = Clock::now() + opts_.term_linger;
            lingering_.push_back(s->id);
        }
    }
    uint32_t want = (c->close_mode() == TcpConnection::CloseMode::kNone ? EPOLLIN : 0u) |
                    (pending ? EPOLLOUT : 0u);
    SetEvents(s, want);
}

void EventLoop::SetEvents(Session* s, uint32_t events) {
    if (s->events == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = s->id;
    if (epoll_ctl(epfd_, EPOLL_CTL_MOD, s->fd, &ev) == 0) s->events = events;
}

void EventLoop::CloseSocket(Session* s) {
    if (s->fd >= 0) {
        epoll_ctl(epfd_, EPOLL_CTL_DEL, s->fd, nullptr);
        close(s->fd);
        s->fd = -1;
        s->lingering = false;
        TcpStats::Add(stats_.connections_closed);
    }
    s->conn->Shutdown();  // Disconnect; may post completions to our mailbox
    MaybeReap(s);
}

void EventLoop::MaybeReap(Session* s) {
    if (s->fd < 0 && s->conn->Idle()) sessions_.erase(s->id);
}

// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<TcpServer>> TcpServer::Start(TcpServerOptions opts) {
    if (!opts.target) return Status::Error(EINVAL, "nvme-tcp: no target");
    if (opts.threads == 0 || opts.threads > 64)
        return Status::Error(EINVAL, "nvme-tcp: threads must be 1..64");
    QZNS_TRY(opts.transport.Validate().Prefix("nvme-tcp"));
    if (!opts.transport.log) {
        opts.transport.log = [](std::string_view s) {
            std::fprintf(stderr, "%.*s\n", static_cast<int>(s.size()), s.data());
        };
    }
    std::string host = opts.addr.empty() ? "127.0.0.1" : opts.addr;
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);

    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const std::string service = std::to_string(opts.port);
    if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0)
        return Status::Error(EINVAL, "nvme-tcp: address '" + host + "': " + gai_strerror(rc));
    int fd = -1;
    Status last = Status::Error(EADDRNOTAVAIL, "nvme-tcp: no usable address for '" + host + "'");
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            last = Errno("nvme-tcp: socket");
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, opts.backlog) == 0) break;
        last = Errno("nvme-tcp: bind/listen " + host + " port " + service);
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) return last;

    std::unique_ptr<TcpServer> srv(new TcpServer());
    srv->opts_ = std::move(opts);
    sockaddr_storage ss{};
    socklen_t sl = sizeof(ss);
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl);
    srv->address_ = FormatAddr(reinterpret_cast<sockaddr*>(&ss));
    srv->port_ = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                          : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);

    std::vector<EventLoop*> raw;
    for (unsigned i = 0; i < srv->opts_.threads; i++) {
        srv->loops_.push_back(std::make_unique<EventLoop>(srv->opts_));
        raw.push_back(srv->loops_.back().get());
    }
    srv->loops_[0]->SetListener(fd);
    for (auto& l : srv->loops_) {
        l->SetPeers(raw);
        if (Status st = l->Init(); !st.ok()) {
            srv->stopped_ = true;  // threads never started
            return st.Prefix("nvme-tcp");
        }
    }
    for (auto& l : srv->loops_) l->Start();
    return srv;
}

TcpServer::~TcpServer() { Stop(); }

void TcpServer::Stop() {
    if (stopped_) return;
    stopped_ = true;
    // Loop 0 owns the listener: once it is closed, no connection is handed to another loop.
    auto listener_closed = std::make_shared<std::promise<void>>();
    EventLoop* first = loops_[0].get();
    first->PostTask([first, listener_closed] {
        first->CloseListener();
        listener_closed->set_value();
    });
    listener_closed->get_future().wait_for(std::chrono::seconds(1));  // loop 0 may have died
    for (auto& l : loops_) l->BeginStop();
    for (auto& l : loops_) l->Finish();  // loops stay for Stats()
}

TcpStatsSnapshot TcpServer::Stats() const {
    TcpStatsSnapshot s;
    for (const auto& l : loops_) s.Accumulate(l->stats());
    return s;
}

Json TcpServer::StatsJson() const {
    TcpStatsSnapshot s = Stats();
    Json j = Json::MakeObject();
    j.Set("address", address_);
    j.Set("connections-accepted", s.connections_accepted);
    j.Set("connections-active", s.connections_active);
    j.Set("connections-closed", s.connections_closed);
    j.Set("pdus-rx", s.pdus_rx);
    j.Set("pdus-tx", s.pdus_tx);
    j.Set("bytes-rx", s.bytes_rx);
    j.Set("bytes-tx", s.bytes_tx);
    j.Set("commands", s.commands);
    j.Set("r2ts", s.r2ts);
    j.Set("c2h-success", s.c2h_success);
    j.Set("term-reqs-sent", s.term_reqs_sent);
    j.Set("term-reqs-received", s.term_reqs_received);
    j.Set("header-digest-errors", s.header_digest_errors);
    j.Set("data-digest-errors", s.data_digest_errors);
    j.Set("transport-errors", s.transport_errors);
    j.Set("memory-bytes", s.memory_bytes);
    j.Set("connection-memory-peak", s.connection_memory_peak);
    Json states = Json::MakeObject();
    for (size_t i = 1; i < kRequestStateCount; i++)
        states.Set(RequestStateName(static_cast<RequestState>(i)), s.requests_in_state[i]);
    j.Set("requests", std::move(states));
    return j;
}

std::vector<TcpRequestInfo> TcpServer::Requests() const {
    if (stopped_) return {};
    struct Shared {
        util::Mutex mu;
        std::vector<TcpRequestInfo> out GUARDED_BY(mu);
    };
    auto shared = std::make_shared<Shared>();
    std::vector<std::future<void>> waits;
    for (const auto& l : loops_) {
        auto done = std::make_shared<std::promise<void>>();
        waits.push_back(done->get_future());
        EventLoop* loop = l.get();
        loop->PostTask([loop, shared, done] {
            std::vector<TcpRequestInfo> mine;
            loop->AppendRequests(&mine);
            {
                util::MutexLock lk(shared->mu);
                shared->out.insert(shared->out.end(), mine.begin(), mine.end());
            }
            done->set_value();
        });
    }
    const auto deadline = Clock::now() + std::chrono::seconds(1);
    for (auto& w : waits) w.wait_until(deadline);
    util::MutexLock lk(shared->mu);
    return shared->out;
}

}  // namespace qzns::nvmf::tcp
