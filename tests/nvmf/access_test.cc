// Host allow-lists over real NVMe/TCP sockets, with the NVM target and the discovery controller
// behind one port as the daemon runs them: a host not on a subsystem's list is refused at
// Connect with Connect Invalid Host (NVMe-oF: SCT 1h, SC 84h; Linux NVME_SC_CONNECT_INVALID_HOST
// = 0x184), gets no controller, cannot join another host's controller, and does not see the
// subsystem in the discovery log (Linux nvmet lists only subsystems nvmet_host_allowed() lets
// the host use).
#include <gtest/gtest.h>

#include <cstring>
#include <tuple>

#include "hw/nvme/discovery.h"
#include "hw/nvme/subsystem.h"
#include "nvmf/tcp/server.h"
#include "tests/nvmf/host-queue.h"
#include "tests/qtest/nvme-qtest.h"

namespace qzns::nvmf::testing {
namespace {

constexpr char kDisc[] = "nqn.2014-08.org.nvmexpress.discovery";
constexpr char kLocked[] = "nqn.2026-11.io.qzns:locked";
constexpr char kOpen[] = "nqn.2026-11.io.qzns:open";
constexpr char kGoodHost[] = "nqn.2014-08.org.example:good";
constexpr char kBadHost[] = "nqn.2014-08.org.example:bad";
std::string Str(const std::vector<uint8_t>& b, size_t off, size_t len) {
    std::string s(reinterpret_cast<const char*>(b.data()) + off, len);
    return s.substr(0, s.find('\0'));
}

class AccessOverTcp : public ::testing::Test {
protected:
    void SetUp() override {
        image_ = std::make_unique<nvme::qtest::MemImage>(nvme::qtest::ZonedImageSpec{});
        be_ = image_->Open();
        ASSERT_TRUE(be_);
        nvme::SubsystemConfig cfg;
        cfg.nqn = kLocked;
        cfg.allow_any_host = false;
        cfg.allowed_hosts = {kGoodHost};
        auto locked = nvme::Subsystem::Create(cfg);
        ASSERT_TRUE(locked.ok()) << locked.status().message();
        locked_ = *locked;
        ASSERT_TRUE(locked_->AddBackend(be_, {}).ok());
        cfg.nqn = kOpen;
        cfg.allow_any_host = true;
        cfg.allowed_hosts.clear();
        auto open = nvme::Subsystem::Create(cfg);
        ASSERT_TRUE(open.ok()) << open.status().message();
        target_ = std::make_unique<nvme::NvmeTarget>();
        ASSERT_TRUE(target_->AddSubsystem(locked_).ok());
        ASSERT_TRUE(target_->AddSubsystem(*open).ok());
        discovery_ = std::make_unique<nvme::DiscoveryTarget>();
        discovery_->SetRecords({nvme::DiscoveryRecord{kLocked, "127.0.0.1", 4420, 1, {kGoodHost}},
                                nvme::DiscoveryRecord{kOpen, "127.0.0.1", 4420, 1, {}}});
        port_ = std::make_unique<nvme::PortTarget>(target_.get(), discovery_.get());
        tcp::TcpServerOptions o;
        o.addr = "127.0.0.1";
        o.port = 0;
        o.target = port_.get();
        o.stop_timeout = std::chrono::milliseconds(3000);
        o.transport.log = [](std::string_view) {};
        auto server = tcp::TcpServer::Start(o);
        ASSERT_TRUE(server.ok()) << server.status().message();
        server_ = std::move(server).value();
    }
    void TearDown() override {
        if (server_) server_->Stop();
        port_.reset();
        discovery_.reset();
        target_.reset();
        locked_.reset();
        if (be_) {
            EXPECT_TRUE(be_->Close().ok());
        }
    }

    // The subsystems a host finds in the discovery log on this port.
    std::vector<std::string> Discover(const std::string& hostnqn) {
        Queue q(server_->port());
        EXPECT_EQ(q.Connect(kDisc, hostnqn).status, 0) << "discovery admits every host, as nvmet does";
        EXPECT_EQ(q.Enable(false).status, 0);
        Answer log = q.DiscoveryLog(4096);
        EXPECT_EQ(log.status, 0);
        std::vector<std::string> nqns;
        if (log.data.size() < 1024) return nqns;
        uint64_t numrec = Get32(&log.data[8]) | uint64_t{Get32(&log.data[12])} << 32;
        for (uint64_t i = 0; i < numrec && 1024 * (i + 2) <= log.data.size(); i++)
            nqns.push_back(Str(log.data, 1024 * (i + 1) + 256, 256));
        return nqns;
    }

    std::unique_ptr<nvme::qtest::MemImage> image_;
    std::shared_ptr<BlockBackend> be_;
    std::shared_ptr<nvme::Subsystem> locked_;
    std::unique_ptr<nvme::NvmeTarget> target_;
    std::unique_ptr<nvme::DiscoveryTarget> discovery_;
    std::unique_ptr<nvme::PortTarget> port_;
    std::unique_ptr<tcp::TcpServer> server_;
};

TEST_F(AccessOverTcp, HostNotOnTheListIsRefusedAtConnect) {
    Queue q(server_->port());
    Answer a = q.Connect(kLocked, kBadHost);
    EXPECT_EQ(a.status, 0x184 | kDnr) << "Connect Invalid Host, final";
    // IATTR bit 0 (the error is in the Connect data) and IPO = offset of HOSTNQN, as Linux's
    // nvmf_log_connect_error reads them.
    EXPECT_EQ(a.dw0, (1u << 16) | 512u);
    EXPECT_TRUE(locked_->Controllers().empty()) << "no controller for a refused host";
}

TEST_F(AccessOverTcp, RefusedHostLearnsNothingOnItsQueue) {
    Queue q(server_->port());
    ASSERT_EQ(q.Connect(kLocked, kBadHost).status & 0x7ff, 0x184);
    // No admin queue: every command but Connect is out of sequence, and no data comes back.
    Answer cap = q.PropertyGet(0x00);
    EXPECT_EQ(cap.status & 0x7ff, 0x00c);
    EXPECT_EQ(cap.dw0, 0u) << "CAP is not revealed";
    Answer id = q.Identify(0x02);
    EXPECT_EQ(id.status & 0x7ff, 0x00c);
    EXPECT_TRUE(id.data.empty()) << "no namespace list";
    EXPECT_EQ(q.Identify(0x00, 1).status & 0x7ff, 0x00c);
}

TEST_F(AccessOverTcp, RefusedHostCannotJoinAnAllowedHostsController) {
    Queue admin(server_->port());
    Answer a = admin.Connect(kLocked, kGoodHost);
    ASSERT_EQ(a.status, 0);
    uint16_t cntlid = uint16_t(a.dw0);
    ASSERT_EQ(admin.Enable(true).status, 0);
    // The CNTLID is guessable (they are handed out from 1); knowing it must not let another
    // host attach an I/O queue and read the namespaces.
    Queue intruder(server_->port());
    Answer b = intruder.Connect(kLocked, kBadHost, 1, cntlid);
    EXPECT_EQ(b.status, 0x184 | kDnr);
    EXPECT_EQ(intruder.Identify(0x00, 1).status & 0x7ff, 0x00c);
    Queue io(server_->port());
    EXPECT_EQ(io.Connect(kLocked, kGoodHost, 1, cntlid).status, 0) << "the allowed host's own I/O queue";
    EXPECT_EQ(locked_->Controllers().size(), 1u);
}

TEST_F(AccessOverTcp, AllowedHostConnectsAndSeesItsNamespaces) {
    Queue q(server_->port());
    ASSERT_EQ(q.Connect(kLocked, kGoodHost).status, 0);
    ASSERT_EQ(q.Enable(true).status, 0);
    Answer list = q.Identify(0x02);
    ASSERT_EQ(list.status, 0);
    ASSERT_EQ(list.data.size(), 4096u);
    EXPECT_NE(Get32(&list.data[0]), 0u);
}

TEST_F(AccessOverTcp, DiscoveryLogListsOnlySubsystemsTheHostMayUse) {
    EXPECT_EQ(Discover(kBadHost), std::vector<std::string>{kOpen});
    EXPECT_EQ(Discover(kGoodHost), (std::vector<std::string>{kLocked, kOpen}));
}

}  // namespace
}  // namespace qzns::nvmf::testing
