// No heap allocation per I/O: steady-state Read, Write (in-capsule and through R2T) and Zone
// Append through the real NVMe/TCP server, controller and zoned qcow2 backend (io_uring where
// the kernel has it) allocate nothing. Every operator new in the process is counted while the
// measured I/O runs (the test's own client thread excepted); the first few allocations print a
// backtrace, so a failure names the code that allocated.
#include <execinfo.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "block/file-fault.h"
#include "block/qcow2/qcow2.h"
#include "hw/nvme/subsystem.h"
#include "nvmf/tcp/server.h"
#include "tests/alloc-count.h"
#include "tests/nvmf/host-queue.h"

namespace qzns::nvmf::testing {
namespace {

constexpr char kNqn[] = "nqn.2026-12.io.qzns:alloc";
constexpr char kHost[] = "nqn.2014-08.org.example:alloc-host";
constexpr uint64_t kZone = 16 << 20;

std::vector<uint8_t> Io(uint8_t opcode, uint32_t nsid, uint64_t slba, uint32_t bytes, uint32_t lba_shift,
                        Sgl sgl) {
    std::vector<uint8_t> s = MakeSqe(opcode, 0, sgl, bytes);
    Put32(&s[4], nsid);
    Put64(&s[40], slba);
    Put32(&s[48], (bytes >> lba_shift) - 1);
    return s;
}

class AllocationFree : public ::testing::Test {
protected:
    void SetUp() override {
        void* warm[2];
        (void)backtrace(warm, 2);
        char path[] = "/tmp/qzns-alloc-XXXXXX";
        int fd = mkstemp(path);
        ASSERT_GE(fd, 0);
        close(fd);
        path_ = path;
        {
            auto f = OpenPosixFile(path_, {.write = true, .create = true, .direct = false, .lock = false});
            ASSERT_TRUE(f.ok()) << f.status().message();
            qcow2::CreateOptions co;
            co.size = 16 * kZone;
            qcow2::ZonedGeometry g;
            g.profile = qcow2::ZonedProfile::kZns;
            g.zone_size = g.zone_capacity = kZone;
            g.max_append_bytes = 128 << 10;
            co.zoned = g;
            Status st = qcow2::Create(std::move(*f), co);
            ASSERT_TRUE(st.ok()) << st.message();
        }
        BlockBackendOptions bo;
        bo.filename = path_;
        auto be = BlockBackend::Open(bo);
        ASSERT_TRUE(be.ok()) << be.status().message();
        be_ = std::shared_ptr<BlockBackend>(std::move(*be));
        nvme::SubsystemConfig cfg;
        cfg.nqn = kNqn;
        auto s = nvme::Subsystem::Create(cfg);
        ASSERT_TRUE(s.ok()) << s.status().message();
        subsys_ = *s;
        nvme::NamespaceOptions nopts;
        nopts.lba_size = 4096;
        auto ids = subsys_->AddBackend(be_, nopts);
        ASSERT_TRUE(ids.ok()) << ids.status().message();
        nsid_ = ids->front();
        target_ = std::make_unique<nvme::NvmeTarget>();
        ASSERT_TRUE(target_->AddSubsystem(subsys_).ok());
        tcp::TcpServerOptions o;
        o.addr = "127.0.0.1";
        o.port = 0;
        o.target = target_.get();
        o.transport.log = [](std::string_view) {};
        auto server = tcp::TcpServer::Start(o);
        ASSERT_TRUE(server.ok()) << server.status().message();
        server_ = std::move(server).value();
    }
    void TearDown() override {
        g_counting = false;
        if (server_) server_->Stop();
        target_.reset();
        subsys_.reset();
        if (be_) {
            EXPECT_TRUE(be_->Close().ok());
        }
        be_.reset();
        if (!path_.empty()) unlink(path_.c_str());
    }

    std::string path_;
    std::shared_ptr<BlockBackend> be_;
    std::shared_ptr<nvme::Subsystem> subsys_;
    std::unique_ptr<nvme::NvmeTarget> target_;
    std::unique_ptr<tcp::TcpServer> server_;
    uint32_t nsid_ = 0;
};

TEST_F(AllocationFree, SteadyStateReadWriteAppendOverTcp) {
    t_exempt = true;
    Queue admin(server_->port());
    // KATO 0: the keep-alive thread has no deadline to check while the I/O is measured.
    Answer c = admin.Connect(kNqn, kHost);
    ASSERT_EQ(c.status, 0);
    const uint16_t cntlid = static_cast<uint16_t>(c.dw0);
    ASSERT_EQ(admin.Enable(/*zoned_css=*/true).status, 0);
    Queue io(server_->port());
    ASSERT_EQ(io.Connect(kNqn, kHost, 1, cntlid).status, 0);
    const uint32_t shift = 12;
    const uint64_t zone_lbas = kZone >> shift;
    std::vector<uint8_t> small(4096, 0x5a), big(128 << 10, 0xa5);
    uint64_t wp = 0;  // zone 0: sequential writes
    auto round = [&](int i) {
        ASSERT_EQ(io.Run(Io(0x01, nsid_, wp, 4096, shift, Sgl::kInCapsule), small).status, 0) << "write " << i;
        ASSERT_EQ(io.Run(Io(0x01, nsid_, wp + 1, 128 << 10, shift, Sgl::kTransport), big).status, 0)
            << "R2T write " << i;
        Answer r = io.Run(Io(0x02, nsid_, wp, 4096, shift, Sgl::kTransport));
        ASSERT_EQ(r.status, 0) << "read " << i;
        ASSERT_EQ(r.data, small);
        Answer a = io.Run(Io(0x7d, nsid_, zone_lbas, 4096, shift, Sgl::kInCapsule), small);
        ASSERT_EQ(a.status, 0) << "append " << i;
        EXPECT_EQ(a.dw0, zone_lbas + i) << "append LBA";
        wp += 1 + (128 << 10) / 4096;
    };
    const int kWarm = 16, kMeasured = 64;
    for (int i = 0; i < kWarm; i++) round(i);
    g_allocs = 0;
    g_counting = true;
    for (int i = kWarm; i < kWarm + kMeasured; i++) round(i);
    g_counting = false;
    EXPECT_EQ(g_allocs.load(), 0u) << "heap allocations in " << kMeasured * 4
                                   << " steady-state commands (backtraces above)";
    EXPECT_EQ(io.Run(Io(0x02, nsid_, wp - 1, 4096, shift, Sgl::kTransport)).data,
              std::vector<uint8_t>(big.end() - 4096, big.end()));
}

}  // namespace
}  // namespace qzns::nvmf::testing
