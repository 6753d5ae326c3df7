// A host queue over a real NVMe/TCP socket for tests against the real target: one connection
// that runs commands one at a time (Fabrics Connect, Property Get/Set, Identify, I/O with
// in-capsule data, R2T writes and C2H reads).
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/nvmf/tcp-client.h"

namespace qzns::nvmf::testing {

constexpr uint8_t kOpFabrics = 0x7f, kFctypeConnect = 0x01, kFctypePropGet = 0x04, kFctypePropSet = 0x00;
constexpr uint16_t kDnr = 0x4000;

struct Answer {
    uint16_t status = 0xffff;  // 15-bit Status Field (DNR in bit 14)
    uint32_t dw0 = 0;
    std::vector<uint8_t> data;
};

// One NVMe/TCP connection (one queue) that runs commands one at a time.
class Queue {
public:
    explicit Queue(uint16_t port) {
        EXPECT_TRUE(c_.Connect(port));
        EXPECT_TRUE(c_.Handshake(false, false));
    }
    // `icd` is sent in the capsule, or after R2T when the SQE's SGL is a transport descriptor.
    Answer Run(std::vector<uint8_t> sqe, const std::vector<uint8_t>& icd = {}) {
        Put16(&sqe[2], cid_++);
        Answer a;
        const bool in_capsule = sqe[39] == 0x01;
        EXPECT_TRUE(c_.SendCapsule(sqe, in_capsule ? icd : std::vector<uint8_t>{}));
        for (;;) {
            std::string err;
            auto p = c_.RecvPdu(&err);
            if (!p) {
                ADD_FAILURE() << err;
                return a;
            }
            if (p->type() == 0x09) {  // R2T: send the solicited part of icd in one H2CData
                const uint16_t ttag = Get16(&p->hdr[10]);
                const uint32_t r2to = Get32(&p->hdr[12]), r2tl = Get32(&p->hdr[16]);
                if (uint64_t{r2to} + r2tl > icd.size()) {
                    ADD_FAILURE() << "R2T beyond the data";
                    return a;
                }
                std::vector<uint8_t> chunk(icd.begin() + r2to, icd.begin() + r2to + r2tl);
                EXPECT_TRUE(c_.Send(c_.H2CDataBytes(Get16(&sqe[2]), ttag, r2to, chunk, true)));
                continue;
            }
            if (p->type() == 0x07) {
                a.data.insert(a.data.end(), p->data.begin(), p->data.end());
                if (p->flags() & 0x08) {
                    a.status = 0;
                    return a;
                }
                continue;
            }
            EXPECT_EQ(p->type(), 0x05);
            a.status = Get16(&p->hdr[8 + 14]) >> 1;
            a.dw0 = Get32(&p->hdr[8]);
            return a;
        }
    }
    Answer Connect(const std::string& subnqn, const std::string& hostnqn, uint16_t qid = 0,
                   uint16_t cntlid = 0xffff) {
        std::vector<uint8_t> sqe = MakeSqe(kOpFabrics, 0, Sgl::kInCapsule, 1024, 0, 0, kFctypeConnect);
        Put16(&sqe[42], qid);
        Put16(&sqe[44], qid ? 127 : 31);
        std::vector<uint8_t> cd(1024, 0);
        Put16(&cd[16], cntlid);
        std::memcpy(&cd[256], subnqn.data(), subnqn.size());
        std::memcpy(&cd[512], hostnqn.data(), hostnqn.size());
        return Run(sqe, cd);
    }
    Answer PropertyGet(uint32_t ofst) {
        std::vector<uint8_t> sqe = MakeSqe(kOpFabrics, 0, Sgl::kNone, 0, 0, 0, kFctypePropGet);
        sqe[40] = 1;  // 8 bytes
        Put32(&sqe[44], ofst);
        return Run(sqe);
    }
    Answer Enable(bool zoned_css) {
        std::vector<uint8_t> sqe = MakeSqe(kOpFabrics, 0, Sgl::kNone, 0, 0, 0, kFctypePropSet);
        Put32(&sqe[44], 0x14);
        Put32(&sqe[48], (6u << 16) | (4u << 20) | (zoned_css ? 6u << 4 : 0) | 1);
        return Run(sqe);
    }
    Answer Identify(uint8_t cns, uint32_t nsid = 0) {
        std::vector<uint8_t> sqe = MakeSqe(0x06, 0, Sgl::kTransport, 4096, cns);
        Put32(&sqe[4], nsid);
        return Run(sqe);
    }
    Answer DiscoveryLog(uint32_t bytes) {
        std::vector<uint8_t> sqe = MakeSqe(0x02, 0, Sgl::kTransport, bytes);
        Put32(&sqe[40], 0x70 | ((bytes / 4 - 1) << 16));
        return Run(sqe);
    }

private:
    TestClient c_;
    uint16_t cid_ = 1;
};

}  // namespace qzns::nvmf::testing
