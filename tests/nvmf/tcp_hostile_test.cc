// Hostile hosts against one NVMe/TCP server on loopback while a well-behaved host keeps doing
// verified I/O: random bytes, truncated ICReqs, absurd PDU lengths, capsules before ICReq,
// mutated valid streams, half-open connections (silent, or stalled in the middle of a header)
// and slow readers (a queue full of reads whose responses are never read). The server must keep
// serving the good host throughout, close every connection that broke the protocol or hung up,
// and never let one connection hold more than TcpConnection::MemoryBound.
//
// Deterministic: each hostile connection's kind and bytes come from a generator seeded with
// QZNS_HOSTILE_SEED (default 15) and its index; the thread interleaving is not, but no check
// depends on it.
#include <sys/socket.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>

#include "tests/nvmf/tcp-harness.h"

namespace qzns::nvmf::testing {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t Seed() {
    const char* s = std::getenv("QZNS_HOSTILE_SEED");
    return s ? std::strtoull(s, nullptr, 0) : 15;
}

// Reads and discards until the server closes; false if it has not within timeout_ms.
bool DrainUntilClosed(int fd, int timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    std::vector<uint8_t> buf(64 * 1024);
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) return false;
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, static_cast<int>(left)) <= 0) return false;
        ssize_t r = recv(fd, buf.data(), buf.size(), 0);
        if (r == 0) return true;
        if (r < 0) return errno == ECONNRESET;
    }
}

enum class Kind {
    kRandomBytes,         // garbage from the first byte (never a valid ICReq)
    kTruncatedIcReq,      // part of an ICReq, then EOF
    kAbsurdLength,        // ICReq, then a capsule whose plen is huge or below hlen
    kCapsuleBeforeIcReq,  // a valid Connect capsule with no ICReq first
    kMutated,             // a valid session with random bytes flipped, then EOF
    kSilent,              // connects and never sends (kept open)
    kHalfHeader,          // ICReq and half a capsule header, then stalls (kept open)
    kSlowReader,          // fills its queue with reads and never reads a response (kept open)
    kCount
};

class TcpHostileTest : public TcpServerFixture {
protected:
    static tcp::TcpServerOptions Options() {
        tcp::TcpServerOptions o;
        o.threads = 2;
        o.term_linger = std::chrono::milliseconds(300);
        o.transport.max_outstanding = 32;
        o.transport.max_transfer = 256 * 1024;
        o.transport.max_buffer_bytes = 1024 * 1024;
        o.transport.max_c2h_data = 64 * 1024;
        return o;
    }

    std::vector<uint8_t> ConnectCapsule(uint16_t cid) {
        TestClient b;  // only builds bytes
        return b.CapsuleBytes(MakeSqe(kOpFabrics, cid, Sgl::kInCapsule, 1024, 0, 0, kFctypeConnect),
                              std::vector<uint8_t>(1024, 0));
    }

    // Runs one hostile connection; returns its socket if it is one that stays open, after
    // checking that the server closed it otherwise.
    std::unique_ptr<TestClient> Hostile(Kind kind, std::mt19937_64& rng) {
        auto c = std::make_unique<TestClient>();
        EXPECT_TRUE(c->Connect(server_->port()));
        const std::vector<uint8_t> icreq = TestClient::IcReqBytes(false, false);
        auto random_bytes = [&](size_t n) {
            std::vector<uint8_t> v(n);
            for (auto& b : v) b = static_cast<uint8_t>(rng());
            return v;
        };
        const char* name = "";
        switch (kind) {
        case Kind::kRandomBytes: {
            name = "random bytes";
            auto v = random_bytes(1 + rng() % 4096);
            v[0] |= 1;  // type 0 is ICReq: with anything else first the stream is invalid
            c->Send(v);
            break;
        }
        case Kind::kTruncatedIcReq:
            name = "truncated ICReq";
            c->Send(icreq.data(), 1 + rng() % (icreq.size() - 1));
            shutdown(c->fd(), SHUT_WR);
            break;
        case Kind::kAbsurdLength: {
            name = "absurd PDU length";
            c->Send(icreq);
            auto cap = ConnectCapsule(1);
            const uint32_t plens[] = {0xffffffffu, 0x80000000u, 16u * 1024 * 1024 + 72, 8, 71};
            Put32(&cap[4], plens[rng() % 5]);
            c->Send(cap.data(), 72);
            break;
        }
        case Kind::kCapsuleBeforeIcReq:
            name = "capsule before ICReq";
            c->Send(ConnectCapsule(1));
            break;
        case Kind::kMutated: {
            name = "mutated session";
            std::vector<uint8_t> s = icreq;
            auto cap = ConnectCapsule(1);
            s.insert(s.end(), cap.begin(), cap.end());
            TestClient b;
            for (uint16_t cid = 2; cid < 6; cid++) {
                auto r = b.CapsuleBytes(MakeSqe(cid & 1 ? kOpRead : kOpWrite, cid, Sgl::kTransport, 4096, 7));
                s.insert(s.end(), r.begin(), r.end());
            }
            for (int flips = 1 + static_cast<int>(rng() % 8); flips > 0; flips--)
                s[rng() % s.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
            c->Send(s);
            shutdown(c->fd(), SHUT_WR);
            break;
        }
        case Kind::kSilent:
            return c;
        case Kind::kHalfHeader: {
            c->Send(icreq);
            auto cap = ConnectCapsule(1);
            c->Send(cap.data(), 1 + rng() % 71);
            return c;
        }
        case Kind::kSlowReader: {
            // A small receive buffer so the responses back up into the server quickly.
            int small = 4096;
            setsockopt(c->fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
            EXPECT_TRUE(c->Handshake(false, false).has_value());
            FabricsConnect(*c, 1);
            // All in one send, so the server takes them in one read and fills its data budget
            // before any response can drain.
            const auto o = Options().transport;
            std::vector<uint8_t> reads;
            for (uint16_t cid = 2; cid < 2 + o.max_outstanding; cid++) {
                auto r = c->CapsuleBytes(MakeSqe(kOpRead, cid, Sgl::kTransport, o.max_transfer, 3));
                reads.insert(reads.end(), r.begin(), r.end());
            }
            c->Send(reads);
            return c;
        }
        case Kind::kCount: break;
        }
        EXPECT_TRUE(DrainUntilClosed(c->fd(), 5000)) << "server kept a " << name << " connection open";
        return nullptr;
    }

    uint64_t Active() { return server_->Stats().connections_active; }

    bool WaitActive(uint64_t n, int timeout_ms) {
        const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
        while (Active() != n) {
            if (Clock::now() > deadline) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return true;
    }
};

TEST_F(TcpHostileTest, ServerKeepsServingAndBoundsEveryHostileConnection) {
    StartServer(Options());
    const uint64_t seed = Seed();
    RecordProperty("seed", std::to_string(seed));
    const auto opts = Options().transport;
    const uint64_t bound = tcp::TcpConnection::MemoryBound(opts);

    // The good host: writes then reads back a pattern, over and over, until told to stop.
    std::atomic<bool> stop{false};
    std::atomic<int> good_ops{0};
    std::thread good([&] {
        auto c = Client();
        for (uint16_t i = 0; !stop.load(); i++) {
            const uint8_t pattern = static_cast<uint8_t>(i);
            const uint16_t cid = static_cast<uint16_t>(0x200 + i % 64);
            ASSERT_EQ(Write(*c, cid, 64 * 1024, pattern), 0);
            ReadResult r = Read(*c, cid, 64 * 1024, pattern);
            ASSERT_TRUE(r.error.empty()) << r.error;
            ASSERT_EQ(r.data.size(), 64u * 1024);
            ASSERT_TRUE(MatchesPattern(pattern, r.data));
            good_ops++;
        }
    });

    // Hostile hosts on four threads; those that stay open are kept until the end.
    constexpr int kThreads = 4, kPerThread = 40;
    std::vector<std::vector<std::unique_ptr<TestClient>>> kept(kThreads);
    std::vector<std::thread> hostile;
    for (int t = 0; t < kThreads; t++) {
        hostile.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; i++) {
                std::mt19937_64 rng(seed * 1000003 + static_cast<uint64_t>(t * kPerThread + i));
                auto kind = static_cast<Kind>(rng() % static_cast<uint64_t>(Kind::kCount));
                if (auto c = Hostile(kind, rng)) kept[t].push_back(std::move(c));
            }
        });
    }
    for (auto& h : hostile) h.join();
    size_t open = 0;
    for (auto& k : kept) open += k.size();
    ASSERT_GT(open, 0u);

    // Every kept connection is still being served (bounded, not leaking): the good host still
    // completes I/O with all of them open.
    const int before = good_ops.load();
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (good_ops.load() < before + 20 && Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_GE(good_ops.load(), before + 20) << "the good host stalled while hostile connections were open";
    EXPECT_EQ(Active(), 1 + open);

    tcp::TcpStatsSnapshot s = server_->Stats();
    EXPECT_LE(s.connection_memory_peak, bound) << "one connection held more than MemoryBound";
    // The slow readers did push a connection up to its data budget, so the check above bites.
    EXPECT_GE(s.connection_memory_peak, opts.max_buffer_bytes);
    EXPECT_LE(static_cast<uint64_t>(s.memory_bytes), (1 + open) * bound);

    // Hanging up ends them all; what they held is given back.
    for (auto& k : kept) k.clear();
    EXPECT_TRUE(WaitActive(1, 5000)) << Active() << " connections still open";
    stop = true;
    good.join();
    EXPECT_GT(good_ops.load(), 0);
    EXPECT_LE(static_cast<uint64_t>(server_->Stats().memory_bytes), bound);
}

// A slow reader that keeps sending reads is dropped once more of them are outstanding than its
// queue holds (after term_linger, as it never reads the C2HTermReq). Responses the kernel
// buffers free their slots, so it takes more than max_outstanding commands; the kernel cannot
// buffer 1000 of 256 KiB.
TEST_F(TcpHostileTest, SlowReaderBeyondQueueDepthIsDropped) {
    StartServer(Options());
    std::mt19937_64 rng(Seed());
    auto c = Hostile(Kind::kSlowReader, rng);
    ASSERT_TRUE(c);
    const auto o = Options().transport;
    for (uint16_t cid = 0x500; cid < 0x500 + 1000; cid++)
        if (!c->SendCapsule(MakeSqe(kOpRead, cid, Sgl::kTransport, o.max_transfer, 3))) break;
    EXPECT_TRUE(WaitActive(0, 5000)) << "a host far over its queue depth was not dropped";
}

}  // namespace
}  // namespace qzns::nvmf::testing
