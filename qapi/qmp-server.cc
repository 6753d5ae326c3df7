#include "qapi/qmp-server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "util/unix-socket.h"

namespace qzns::qmp {
namespace {


Result<int> ListenOn(const std::string& address, std::string* unix_path) {
    if (address.rfind("unix:", 0) == 0) {
        std::string path = address.substr(5);
        auto comma = path.find(',');
        if (comma != std::string::npos) path = path.substr(0, comma);  // ",server,nowait" etc.
        sockaddr_un sa = {};
        sa.sun_family = AF_UNIX;
        if (path.empty() || path.size() >= sizeof(sa.sun_path))
            return Status::Error(EINVAL, "QMP socket path '" + path + "' is empty or too long");
        std::memcpy(sa.sun_path, path.c_str(), path.size());
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return Status::Error(errno, "socket: " + std::string(strerror(errno)));
        if (Status st = RestrictSocketToOwner(fd, path); !st.ok()) {
            close(fd);
            return st;
        }
        unlink(path.c_str());
        if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0 || listen(fd, 8) < 0) {
            int e = errno;
            close(fd);
            return Status::Error(e, "cannot listen on QMP socket " + path + ": " + strerror(e));
        }
        *unix_path = path;
        return fd;
    }
    if (address.rfind("tcp:", 0) == 0) {
        std::string hp = address.substr(4);
        auto comma = hp.find(',');
        if (comma != std::string::npos) hp = hp.substr(0, comma);
        auto colon = hp.rfind(':');
        if (colon == std::string::npos) return Status::Error(EINVAL, "QMP address must be tcp:HOST:PORT");
        std::string host = hp.substr(0, colon), port = hp.substr(colon + 1);
        addrinfo hints = {}, *res = nullptr;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE;
        if (getaddrinfo(host.empty() ? "127.0.0.1" : host.c_str(), port.c_str(), &hints, &res) != 0 || !res)
            return Status::Error(EINVAL, "cannot resolve QMP address " + hp);
        int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 8) < 0) {
            int e = errno;
            freeaddrinfo(res);
            if (fd >= 0) close(fd);
            return Status::Error(e, "cannot listen on QMP address " + hp + ": " + strerror(e));
        }
        freeaddrinfo(res);
        return fd;
    }
    return Status::Error(EINVAL, "QMP address must be unix:PATH or tcp:HOST:PORT, not '" + address + "'");
}

Json Timestamp() {
    timeval tv;
    gettimeofday(&tv, nullptr);
    Json t = Json::MakeObject();
    t.Set("seconds", static_cast<int64_t>(tv.tv_sec)).Set("microseconds", static_cast<int64_t>(tv.tv_usec));
    return t;
}

}  // namespace

Result<std::unique_ptr<QmpServer>> QmpServer::Start(const std::string& address) {
    std::unique_ptr<QmpServer> s(new QmpServer());
    QZNS_ASSIGN(s->listen_fd_, ListenOn(address, &s->unix_path_));
    s->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->thread_ = std::thread([p = s.get()] { p->Run(); });
    return s;
}

QmpServer::~QmpServer() { Stop(); }

void QmpServer::Stop() {
    {
        util::MutexLock lk(mu_);
        if (stop_) return;
        stop_ = true;
    }
    uint64_t one = 1;
    if (write(wake_fd_, &one, sizeof(one)) < 0) {
    }
    if (thread_.joinable()) thread_.join();
    {
        // The loop thread is gone, but Emit may still run on another thread.
        util::MutexLock lk(mu_);
        for (auto& c : clients_) close(c.fd);
        clients_.clear();
    }
    close(listen_fd_);
    close(wake_fd_);
    if (!unix_path_.empty()) unlink(unix_path_.c_str());
}

void QmpServer::SendTo(int fd, const std::string& s) {
    std::string line = s + "\r\n";
    size_t off = 0;
    while (off < line.size()) {
        ssize_t n = send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return;  // the client went away; its fd is reaped by the loop
        off += static_cast<size_t>(n);
    }
}

void QmpServer::Emit(const std::string& event, Json data) {
    Json e = Json::MakeObject();
    e.Set("event", event).Set("data", std::move(data)).Set("timestamp", Timestamp());
    std::string s = e.Dump(-1);
    util::MutexLock lk(mu_);
    for (auto& c : clients_)
        if (c.negotiated) SendTo(c.fd, s);
}

void QmpServer::Run() {
    Json greeting = Json::MakeObject();
    {
        Json ver = Json::MakeObject();
        Json q = Json::MakeObject();
        q.Set("major", 0).Set("minor", 1).Set("micro", 0);
        ver.Set("qemu", std::move(q)).Set("package", "qzns");
        Json qmp = Json::MakeObject();
        qmp.Set("version", std::move(ver)).Set("capabilities", Json::MakeArray());
        greeting.Set("QMP", std::move(qmp));
    }
    std::string greeting_s = greeting.Dump(-1);
    while (true) {
        std::vector<pollfd> fds;
        {
            util::MutexLock lk(mu_);
            if (stop_) return;
            fds.push_back({listen_fd_, POLLIN, 0});
            fds.push_back({wake_fd_, POLLIN, 0});
            for (auto& c : clients_) fds.push_back({c.fd, POLLIN, 0});
        }
        if (poll(fds.data(), fds.size(), -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (fds[1].revents) {
            util::MutexLock lk(mu_);
            if (stop_) return;
        }
        if (fds[0].revents & POLLIN) {
            int c = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c >= 0) {
                util::MutexLock lk(mu_);
                clients_.push_back({c, false, std::make_unique<QmpSession>(dispatcher_)});
                SendTo(c, greeting_s);
            }
        }
        for (size_t i = 2; i < fds.size(); i++) {
            if (!fds[i].revents) continue;
            int fd = fds[i].fd;
            char buf[4096];
            ssize_t n = recv(fd, buf, sizeof(buf), 0);
            util::MutexLock lk(mu_);
            auto it = std::find_if(clients_.begin(), clients_.end(), [fd](const Client& c) { return c.fd == fd; });
            if (it == clients_.end()) continue;
            if (n <= 0) {
                close(fd);
                clients_.erase(it);
                continue;
            }
            QmpSession* session = it->session.get();
            lk.Unlock();
            session->Receive(std::string_view(buf, static_cast<size_t>(n)), [&](const std::string& reply) {
                util::MutexLock reply_lk(mu_);
                auto c = std::find_if(clients_.begin(), clients_.end(), [fd](const Client& c) { return c.fd == fd; });
                if (c == clients_.end()) return;
                c->negotiated = session->negotiated();
                SendTo(fd, reply);
            });
        }
    }
}

}  // namespace qzns::qmp
