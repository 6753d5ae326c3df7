// Shared fixture pieces for the NVMe/TCP socket tests: a server on a free loopback port in
// front of FakeTarget, and host-side flows (Connect, R2T write, C2H read) built on TestClient.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "nvmf/tcp/server.h"
#include "tests/nvmf/fake-target.h"
#include "tests/nvmf/tcp-client.h"
#include "util/mutex.h"

namespace qzns::nvmf::testing {

struct CqeView {
    uint32_t dw0 = 0;
    uint16_t cid = 0;
    uint16_t status = 0;  // status field without the phase bit
};

inline CqeView ParseResp(const RxPdu& p) {
    CqeView c;
    c.dw0 = Get32(&p.hdr[8]);
    c.cid = Get16(&p.hdr[8 + 12]);
    c.status = Get16(&p.hdr[8 + 14]) & 0xfffe;
    return c;
}

struct ReadResult {
    std::vector<uint8_t> data;
    bool success_flag = false;  // ended by C2HData SUCCESS
    bool got_resp = false;
    CqeView cqe;
    int c2h_pdus = 0;
    std::string error;
};

class TcpServerFixture : public ::testing::Test {
protected:
    void TearDown() override {
        if (server_) server_->Stop();
    }

    void StartServer(tcp::TcpServerOptions o = {}, FakeTarget::Options t = {}) {
        target_ = std::make_unique<FakeTarget>(t);
        o.addr = o.addr.empty() ? "127.0.0.1" : o.addr;
        o.port = 0;
        o.target = target_.get();
        if (o.stop_timeout == std::chrono::milliseconds(10000))
            o.stop_timeout = std::chrono::milliseconds(3000);
        o.transport.log = [this](std::string_view s) {
            util::MutexLock lk(log_mu_);
            log_.emplace_back(s);
        };
        auto r = tcp::TcpServer::Start(std::move(o));
        ASSERT_TRUE(r.ok()) << r.status().message();
        server_ = std::move(r).value();
    }

    // TCP connect + ICReq/ICResp (+ Fabrics Connect unless told otherwise).
    std::unique_ptr<TestClient> Client(bool hd = false, bool dd = false, bool connect = true) {
        auto c = std::make_unique<TestClient>();
        EXPECT_TRUE(c->Connect(server_->port()));
        auto ic = c->Handshake(hd, dd);
        EXPECT_TRUE(ic.has_value());
        if (ic) maxh2cdata_ = Get32(&ic->hdr[12]);
        if (connect) FabricsConnect(*c, 0x100);
        return c;
    }

    void FabricsConnect(TestClient& c, uint16_t cid) {
        std::vector<uint8_t> data(1024, 0);
        ASSERT_TRUE(c.SendCapsule(MakeSqe(kOpFabrics, cid, Sgl::kInCapsule, 1024, 0, 0,
                                          kFctypeConnect), data));
        std::string err;
        auto p = c.RecvPdu(&err);
        ASSERT_TRUE(p) << err;
        ASSERT_EQ(p->type(), 0x05);
        CqeView cqe = ParseResp(*p);
        EXPECT_EQ(cqe.cid, cid);
        EXPECT_EQ(cqe.status, 0);
        EXPECT_EQ(cqe.dw0, 1u);
    }

    // Write through R2T/H2CData; returns the CQE status (or -1 on protocol failure).
    int Write(TestClient& c, uint16_t cid, uint32_t len, uint8_t seed, int* r2ts = nullptr) {
        std::vector<uint8_t> data(len);
        FillPattern(seed, data);
        if (!c.SendCapsule(MakeSqe(kOpWrite, cid, Sgl::kTransport, len, seed))) return -1;
        uint32_t sent = 0;
        for (;;) {
            std::string err;
            auto p = c.RecvPdu(&err);
            if (!p) {
                ADD_FAILURE() << err;
                return -1;
            }
            if (p->type() == 0x05) return ParseResp(*p).status;
            if (p->type() != 0x09) {
                ADD_FAILURE() << "unexpected PDU type " << int(p->type());
                return -1;
            }
            if (r2ts) ++*r2ts;
            EXPECT_EQ(Get16(&p->hdr[8]), cid);
            const uint16_t ttag = Get16(&p->hdr[10]);
            const uint32_t r2to = Get32(&p->hdr[12]), r2tl = Get32(&p->hdr[16]);
            EXPECT_EQ(r2to, sent);
            EXPECT_GT(r2tl, 0u);
            EXPECT_LE(r2to + r2tl, len);
            for (uint32_t off = r2to; off < r2to + r2tl;) {
                uint32_t n = std::min(maxh2cdata_.load(), r2to + r2tl - off);
                std::vector<uint8_t> chunk(data.begin() + off, data.begin() + off + n);
                if (!c.Send(c.H2CDataBytes(cid, ttag, off, chunk, off + n == r2to + r2tl)))
                    return -1;
                off += n;
            }
            sent = r2to + r2tl;
        }
    }

    ReadResult Read(TestClient& c, uint16_t cid, uint32_t len, uint8_t seed,
                    uint8_t behaviour = 0) {
        ReadResult rr;
        if (!c.SendCapsule(MakeSqe(kOpRead, cid, Sgl::kTransport, len, seed, behaviour))) {
            rr.error = "send";
            return rr;
        }
        for (;;) {
            auto p = c.RecvPdu(&rr.error);
            if (!p) return rr;
            if (p->type() == 0x05) {
                rr.got_resp = true;
                rr.cqe = ParseResp(*p);
                return rr;
            }
            if (p->type() != 0x07) {
                rr.error = "unexpected PDU type " + std::to_string(p->type());
                return rr;
            }
            rr.c2h_pdus++;
            EXPECT_EQ(Get16(&p->hdr[8]), cid);
            EXPECT_EQ(Get32(&p->hdr[12]), rr.data.size()) << "datao out of order";
            EXPECT_EQ(Get32(&p->hdr[16]), p->data.size());
            rr.data.insert(rr.data.end(), p->data.begin(), p->data.end());
            if (p->flags() & 0x08) {
                EXPECT_TRUE(p->flags() & 0x04) << "SUCCESS without LAST";
                rr.success_flag = true;
                return rr;
            }
        }
    }

    // The next PDU is a C2HTermReq with this FES (and FEI when given), carrying the start of
    // `sent`, and then the connection closes.
    void ExpectTermReq(TestClient& c, uint16_t fes, int fei, const std::vector<uint8_t>& sent) {
        std::string err;
        auto p = c.RecvPdu(&err);
        ASSERT_TRUE(p) << err;
        ASSERT_EQ(p->type(), 0x03) << "expected C2HTermReq";
        EXPECT_EQ(p->hdr[2], 24);
        EXPECT_GE(p->plen(), 24u);
        EXPECT_LE(p->plen(), 152u);
        EXPECT_EQ(Get16(&p->hdr[8]), fes);
        if (fei >= 0) {
            EXPECT_EQ(Get32(&p->hdr[10]), static_cast<uint32_t>(fei));
        }
        ASSERT_GE(p->data.size(), 8u);
        ASSERT_LE(p->data.size(), sent.size());
        EXPECT_TRUE(std::equal(p->data.begin(), p->data.end(), sent.begin()))
            << "TermReq must carry the offending header";
        EXPECT_TRUE(c.WaitClosed()) << "connection not closed after C2HTermReq";
    }

    std::unique_ptr<FakeTarget> target_;
    std::unique_ptr<tcp::TcpServer> server_;
    std::atomic<uint32_t> maxh2cdata_{0};
    util::Mutex log_mu_;
    std::vector<std::string> log_ GUARDED_BY(log_mu_);  // the transport's diagnostics
};

}  // namespace qzns::nvmf::testing
