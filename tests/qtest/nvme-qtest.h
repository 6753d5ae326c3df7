// qtest-style host for the NVMe controller model: commands are built byte by byte at the
// offsets the spec gives (not through hw/nvme/spec.h, so a wrong struct there cannot hide a
// wrong answer), submitted through the FabricsTarget seam exactly as the NVMe/TCP transport
// does, and answers are checked as raw bytes.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <stdlib.h>
#include <unistd.h>

#include "block/block-backend.h"
#include "block/file-fault.h"
#include "block/file.h"
#include "block/qcow2/qcow2.h"
#include "hw/nvme/fabrics-target.h"
#include "hw/nvme/subsystem.h"
#include "util/mutex.h"

namespace qzns::nvme::qtest {

inline constexpr char kSubNqn[] = "nqn.2026-11.io.qzns:test";
inline constexpr char kHostNqn[] = "nqn.2014-08.org.nvmexpress:uuid:0f0e0d0c-0b0a-0908-0706-050403020100";

// Little-endian accessors on raw bytes.
inline uint8_t R8(const std::vector<uint8_t>& b, size_t o) { return b.at(o); }
inline uint16_t R16(const std::vector<uint8_t>& b, size_t o) { return static_cast<uint16_t>(b.at(o) | b.at(o + 1) << 8); }
inline uint32_t R32(const std::vector<uint8_t>& b, size_t o) { return R16(b, o) | uint32_t{R16(b, o + 2)} << 16; }
inline uint64_t R64(const std::vector<uint8_t>& b, size_t o) { return R32(b, o) | uint64_t{R32(b, o + 4)} << 32; }
inline void W16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v); p[1] = uint8_t(v >> 8); }
inline void W32(uint8_t* p, uint32_t v) { W16(p, uint16_t(v)); W16(p + 2, uint16_t(v >> 16)); }
inline void W64(uint8_t* p, uint64_t v) { W32(p, uint32_t(v)); W32(p + 4, uint32_t(v >> 32)); }

// A 64-byte SQE built field by field.
struct Cmd {
    SqeBytes s{};
    explicit Cmd(uint8_t opcode) { s.b[0] = opcode; }
    Cmd& cid(uint16_t v) { W16(s.b + 2, v); return *this; }
    Cmd& nsid(uint32_t v) { W32(s.b + 4, v); return *this; }
    Cmd& flags(uint8_t v) { s.b[1] = v; return *this; }
    Cmd& cdw(int n, uint32_t v) { W32(s.b + 4 * n, v); return *this; }
    Cmd& slba(uint64_t v) { W64(s.b + 40, v); return *this; }
    Cmd& u8(size_t off, uint8_t v) { s.b[off] = v; return *this; }
    Cmd& u16(size_t off, uint16_t v) { W16(s.b + off, v); return *this; }
    Cmd& u32(size_t off, uint32_t v) { W32(s.b + off, v); return *this; }
    Cmd& u64(size_t off, uint64_t v) { W64(s.b + off, v); return *this; }
    // SGL1 as the Linux TCP host writes it: Transport SGL Data Block (5Ah), address 0.
    Cmd& sgl(uint32_t len) { W64(s.b + 24, 0); W32(s.b + 32, len); s.b[39] = 0x5a; return *this; }
};

// Common SQEs, laid out as the Linux 6.1 host builds them.
inline Cmd Identify(uint8_t cns, uint32_t nsid = 0, uint8_t csi = 0, uint16_t cntid = 0) {
    return Cmd(0x06).nsid(nsid).cdw(10, cns | uint32_t{cntid} << 16).cdw(11, uint32_t{csi} << 24).sgl(4096);
}
inline Cmd GetLogPage(uint8_t lid, uint32_t bytes, uint32_t nsid = 0xffffffff, uint8_t csi = 0, bool rae = false,
                      uint64_t offset = 0) {
    uint32_t numd = bytes / 4 - 1;
    return Cmd(0x02).nsid(nsid).cdw(10, lid | (rae ? 1u << 15 : 0) | (numd & 0xffff) << 16)
        .cdw(11, numd >> 16).cdw(12, uint32_t(offset)).cdw(13, uint32_t(offset >> 32))
        .cdw(14, uint32_t{csi} << 24).sgl(bytes);
}
inline Cmd SetFeatures(uint8_t fid, uint32_t cdw11, bool save = false) {
    return Cmd(0x09).cdw(10, fid | (save ? 1u << 31 : 0)).cdw(11, cdw11).sgl(0);
}
inline Cmd GetFeatures(uint8_t fid, uint32_t sel = 0, uint32_t cdw11 = 0) {
    return Cmd(0x0a).cdw(10, fid | sel << 8).cdw(11, cdw11).sgl(0);
}
inline Cmd Connect(uint16_t qid, uint16_t sqsize, uint32_t kato_ms) {
    Cmd c(0x7f);
    c.u8(4, 0x01).u16(42, qid).u16(44, sqsize).u32(48, kato_ms);
    W64(c.s.b + 24, 0);
    W32(c.s.b + 32, 1024);
    c.s.b[39] = 0x01;  // Data Block, Offset subtype: in-capsule
    return c;
}
inline std::vector<uint8_t> ConnectData(uint16_t cntlid, const std::string& subnqn = kSubNqn,
                                        const std::string& hostnqn = kHostNqn) {
    std::vector<uint8_t> d(1024, 0);
    for (int i = 0; i < 16; i++) d[i] = uint8_t(0x10 + i);  // HOSTID
    W16(d.data() + 16, cntlid);
    std::memcpy(d.data() + 256, subnqn.data(), subnqn.size());
    std::memcpy(d.data() + 512, hostnqn.data(), hostnqn.size());
    return d;
}
inline Cmd PropertyGet(uint32_t ofst, bool eight) { return Cmd(0x7f).u8(4, 0x04).u8(40, eight ? 1 : 0).u32(44, ofst); }
inline Cmd PropertySet(uint32_t ofst, uint64_t value) {
    return Cmd(0x7f).u8(4, 0x00).u8(40, 0).u32(44, ofst).u64(48, value);
}
inline Cmd Rw(uint8_t opcode, uint32_t nsid, uint64_t slba, uint32_t nlb1, uint32_t cdw12_flags = 0) {
    return Cmd(opcode).nsid(nsid).slba(slba).cdw(12, (nlb1 - 1) | cdw12_flags);
}
inline Cmd ZoneSend(uint32_t nsid, uint64_t slba, uint8_t zsa, bool all = false) {
    return Cmd(0x79).nsid(nsid).slba(slba).cdw(13, zsa | (all ? 1u << 8 : 0));
}
inline Cmd ZoneRecv(uint32_t nsid, uint64_t slba, uint32_t bytes, uint8_t zra = 0, uint8_t zrasf = 0,
                    bool partial = false) {
    return Cmd(0x7a).nsid(nsid).slba(slba).cdw(12, bytes / 4 - 1)
        .cdw(13, zra | uint32_t{zrasf} << 8 | (partial ? 1u << 16 : 0)).sgl(bytes);
}

struct Completion {
    std::vector<uint8_t> cqe;  // 16 bytes
    std::vector<uint8_t> data;
    uint32_t c2h_len = 0;
    bool arrived = false;

    uint16_t status() const { return uint16_t(R16(cqe, 14) >> 1); }  // 15-bit Status Field
    uint16_t sc() const { return status() & 0x7ff; }                  // SCT|SC without DNR/More/CRD
    bool dnr() const { return status() & 0x4000; }
    uint32_t dw0() const { return R32(cqe, 0); }
    uint32_t dw1() const { return R32(cqe, 4); }
    uint64_t result64() const { return R64(cqe, 0); }
    uint16_t sqhd() const { return R16(cqe, 8); }
    uint16_t cid() const { return R16(cqe, 12); }
};

// An outstanding command (AERs stay pending).
class Pending {
public:
    bool Wait(std::chrono::milliseconds t = std::chrono::milliseconds(5000)) {
        util::MutexLock lk(mu_);
        return cv_.WaitFor(mu_, t, [&]() REQUIRES(mu_) { return c_.arrived; });
    }
    bool Ready() {
        util::MutexLock lk(mu_);
        return c_.arrived;
    }
    Completion Get() {
        Wait();
        util::MutexLock lk(mu_);
        return c_;
    }
    void Fill(const CqeBytes& cqe, uint32_t n) {
        util::MutexLock lk(mu_);
        EXPECT_FALSE(c_.arrived) << "a command completed twice";
        c_.cqe.assign(cqe.b, cqe.b + 16);
        c_.c2h_len = n;
        c_.data.assign(buf.begin(), buf.begin() + std::min<size_t>(n, buf.size()));
        c_.arrived = true;
        cv_.NotifyAll();
    }
    std::vector<uint8_t> buf;

private:
    util::Mutex mu_;  // cv_ signals c_.arrived
    util::CondVar cv_;
    Completion c_ GUARDED_BY(mu_);
};

// A completion that fills `p`. A CompletionFn owns nothing (it never allocates), so the command
// holds one reference to `p` until it completes.
inline CompletionFn FillOnCompletion(std::shared_ptr<Pending> p) {
    auto* hold = new std::shared_ptr<Pending>(std::move(p));
    return [hold](const CqeBytes& cqe, uint32_t n) {
        (*hold)->Fill(cqe, n);
        delete hold;
    };
}

// One host connection (what a TCP connection is to the transport).
class HostQueue {
public:
    HostQueue(FabricsTarget& t, std::string peer = "192.0.2.1:40000") : q_(t.NewQueue(peer)) {
        q_->SetCloseRequest([this] { close_requested_ = true; });
    }
    ~HostQueue() { q_->Disconnect(); }

    // Submits with a data buffer: `h2c` is sent to the controller; for controller-to-host
    // commands pass the SGL length as c2h_len and get the bytes back in Completion::data.
    std::shared_ptr<Pending> Start(const Cmd& c, std::vector<uint8_t> h2c = {}, uint32_t c2h_len = 0) {
        auto p = std::make_shared<Pending>();
        Cmd cmd = c;
        if (cmd.s.b[2] == 0 && cmd.s.b[3] == 0) cmd.cid(next_cid_++);
        p->buf = h2c.empty() ? std::vector<uint8_t>(c2h_len, 0) : std::move(h2c);
        q_->Submit(cmd.s, std::span<uint8_t>(p->buf.data(), p->buf.size()), FillOnCompletion(p));
        return p;
    }
    Completion Run(const Cmd& c, std::vector<uint8_t> h2c = {}, uint32_t c2h_len = 0) {
        auto p = Start(c, std::move(h2c), c2h_len);
        EXPECT_TRUE(p->Wait()) << "command timed out";
        return p->Get();
    }
    Completion RunC2h(const Cmd& c, uint32_t len) { return Run(c, {}, len); }
    void Disconnect() { q_->Disconnect(); }
    bool close_requested() const { return close_requested_; }
    FabricsQueue& queue() { return *q_; }

private:
    std::unique_ptr<FabricsQueue> q_;
    std::atomic<bool> close_requested_{false};
    uint16_t next_cid_ = 1;
};

// A zoned qcow2 image in memory.
struct ZonedImageSpec {
    uint64_t zone_size = 1 << 20;
    uint64_t zone_capacity = 768 << 10;
    uint32_t nr_zones = 16;
    uint32_t nr_conv = 2;
    uint32_t max_open = 4;
    uint32_t max_active = 6;
    uint32_t max_append = 64 << 10;
    uint32_t zd_ext = 64;
};

// A zoned qcow2 image in memory, or in a temporary file when `on_disk` (NewMemFile is not safe
// under concurrent writers, so tests with many commands in flight use a real file).
class MemImage {
public:
    // `faults`: the in-memory medium sits behind a FaultFile (fault()), so a test can make the
    // host file system fail or fill up under the running controller.
    explicit MemImage(const ZonedImageSpec& z, bool on_disk = false, bool faults = false) {
        if (faults) {
            auto ff = NewFaultFile(NewMemFile());
            fault_ = ff.get();
            file_ = std::move(ff);
        } else if (on_disk) {
            char path[] = "/tmp/qzns-qtest-XXXXXX";
            int fd = mkstemp(path);
            EXPECT_GE(fd, 0);
            close(fd);
            path_ = path;
            auto f = OpenPosixFile(path_, {.write = true, .create = true, .direct = false, .lock = false});
            EXPECT_TRUE(f.ok());
            file_ = std::move(*f);
        } else {
            file_ = NewMemFile();
        }
        qcow2::CreateOptions co;
        co.size = uint64_t{z.nr_zones} * z.zone_size;
        co.cluster_size = 65536;
        qcow2::ZonedGeometry g;
        g.profile = qcow2::ZonedProfile::kZns;
        g.zone_size = z.zone_size;
        g.zone_capacity = z.zone_capacity;
        g.nr_conv_zones = z.nr_conv;
        g.max_open_zones = z.max_open;
        g.max_active_zones = z.max_active;
        g.max_append_bytes = z.max_append;
        g.zd_extension_size = z.zd_ext;
        co.zoned = g;
        Status st = qcow2::Create(BorrowFile(file_.get()), co);
        EXPECT_TRUE(st.ok()) << st.message();
    }
    // A plain (unzoned) qcow2 image.
    explicit MemImage(uint64_t size) : file_(NewMemFile()) {
        qcow2::CreateOptions co;
        co.size = size;
        Status st = qcow2::Create(BorrowFile(file_.get()), co);
        EXPECT_TRUE(st.ok()) << st.message();
    }
    std::shared_ptr<BlockBackend> Open() {
        auto img = qcow2::Image::Open(BorrowFile(file_.get()), {.write = true}, nullptr);
        EXPECT_TRUE(img.ok()) << img.status().message();
        if (!img.ok()) return nullptr;
        auto be = BlockBackend::OpenDriver(std::move(*img));
        EXPECT_TRUE(be.ok()) << be.status().message();
        if (!be.ok()) return nullptr;
        return std::shared_ptr<BlockBackend>(std::move(*be));
    }

    FaultFile* fault() const { return fault_; }
    // Opens the medium as a qcow2 image without the block backend (for Check).
    Result<std::unique_ptr<qcow2::Image>> OpenImage(qcow2::Image::OpenFlags flags) {
        return qcow2::Image::Open(BorrowFile(file_.get()), flags, nullptr);
    }

    ~MemImage() {
        file_.reset();
        if (!path_.empty()) unlink(path_.c_str());
    }

private:
    std::unique_ptr<File> file_;
    FaultFile* fault_ = nullptr;  // file_ itself when made with faults
    std::string path_;
};

// Subsystem + target + one image, and the host steps of a connect.
class NvmeQtest : public ::testing::Test {
protected:
    void SetUpTarget(const ZonedImageSpec& z, NamespaceOptions opts = {}, SubsystemConfig cfg = {},
                     bool on_disk = false) {
        if (!image_) image_ = std::make_unique<MemImage>(z, on_disk);  // a test may bring its own
        be_ = image_->Open();
        ASSERT_TRUE(be_);
        if (cfg.nqn.empty()) cfg.nqn = kSubNqn;
        cfg.ctrl.kato_grace_ms = 100;
        auto s = Subsystem::Create(cfg);
        ASSERT_TRUE(s.ok()) << s.status().message();
        subsys_ = *s;
        auto ids = subsys_->AddBackend(be_, opts);
        ASSERT_TRUE(ids.ok()) << ids.status().message();
        nsids_ = *ids;
        target_ = std::make_unique<NvmeTarget>();
        ASSERT_TRUE(target_->AddSubsystem(subsys_).ok());
    }
    void SetUp() override { SetUpTarget(ZonedImageSpec{}); }
    void TearDown() override {
        io_.clear();
        admin_.reset();
        target_.reset();
        subsys_.reset();
        if (be_) {
            EXPECT_TRUE(be_->Close().ok());
        }
    }

    // Connect QID 0, enable with CC.CSS = 110b, returns CNTLID.
    uint16_t ConnectAndEnable(uint32_t kato = 5000, uint32_t css = 6) {
        admin_ = std::make_unique<HostQueue>(*target_);
        Completion c = admin_->Run(Connect(0, 31, kato), ConnectData(0xffff));
        EXPECT_EQ(c.status(), 0);
        cntlid_ = uint16_t(c.dw0());
        EXPECT_EQ(admin_->Run(PropertySet(0x14, (6u << 16) | (4u << 20) | (css << 4))).status(), 0);
        EXPECT_EQ(admin_->Run(PropertySet(0x14, (6u << 16) | (4u << 20) | (css << 4) | 1)).status(), 0);
        EXPECT_EQ(admin_->Run(PropertyGet(0x1c, false)).dw0() & 1, 1u);
        return cntlid_;
    }
    HostQueue& Io(uint16_t qid = 1) {
        while (io_.size() < qid) {
            io_.push_back(std::make_unique<HostQueue>(*target_, "192.0.2.1:4000" + std::to_string(io_.size() + 1)));
            Completion c = io_.back()->Run(Connect(uint16_t(io_.size()), 127, 0), ConnectData(cntlid_));
            EXPECT_EQ(c.status(), 0);
            EXPECT_EQ(c.dw0() & 0xffff, cntlid_);
        }
        return *io_[qid - 1];
    }
    uint32_t zns_nsid() const { return nsids_.at(0); }
    uint32_t conv_nsid() const { return nsids_.at(1); }

    std::unique_ptr<MemImage> image_;
    std::shared_ptr<BlockBackend> be_;
    std::shared_ptr<Subsystem> subsys_;
    std::unique_ptr<NvmeTarget> target_;
    std::unique_ptr<HostQueue> admin_;
    std::vector<std::unique_ptr<HostQueue>> io_;
    std::vector<uint32_t> nsids_;
    uint16_t cntlid_ = 0;
};

inline std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; i++) v[i] = uint8_t(seed + i * 7 + (i >> 9));
    return v;
}

}  // namespace qzns::nvme::qtest
