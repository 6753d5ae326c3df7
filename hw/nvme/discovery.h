// The discovery subsystem (NVMe-oF 1.1 §5): what `nvme discover` and `nvme connect-all` talk
// to. DiscoveryTarget is the FabricsTarget of a discovery port (commonly 8009). It is an
// NvmeTarget holding one Subsystem of the discovery kind, so its controllers are the same
// Controller code as any NVM subsystem's (CC state machine, Connect, Property Get/Set,
// keep-alive, AER); only the admin command set differs (admin-discovery.cc: Identify
// Controller with CNTRLTYPE 2, Get Log Page 70h with one record per exported subsystem and
// port, Get/Set Features), as in Linux's nvmet and SPDK. PortTarget lets an I/O port answer the
// well-known discovery NQN too, as nvmet does.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "hw/nvme/discovery-log.h"
#include "hw/nvme/fabrics-target.h"

namespace qzns::nvme {

struct DiscoveryOptions {
    // A controller whose host stayed silent for KATO plus this grace is torn down.
    uint32_t kato_grace_ms = 1000;
    std::string serial = "QZNSDISC";
    std::string model = "qzns discovery controller";
    std::string firmware = "0.1.0";
};

class Subsystem;
class NvmeTarget;

class DiscoveryTarget final : public FabricsTarget {
public:
    explicit DiscoveryTarget(DiscoveryOptions opts = {});
    ~DiscoveryTarget() override;

    // Replaces the record set. When it differs from the current one, GENCTR advances and live
    // controllers that enabled the event get a Discovery Log Page Change notice.
    void SetRecords(std::vector<DiscoveryRecord> records);
    uint64_t genctr() const;
    // The whole log page (header and the records `hostnqn` may see), as Get Log Page returns it.
    std::vector<uint8_t> LogPage(const std::string& hostnqn) const;

    std::unique_ptr<FabricsQueue> NewQueue(const std::string& peer) override;

    // Runs one keep-alive check now (tests); a thread does this at each controller's deadline.
    void CheckKeepAlive();
    // Live discovery controllers (tests, query commands).
    size_t controller_count() const;

private:
    std::shared_ptr<Subsystem> subsys_;
    std::unique_ptr<NvmeTarget> target_;
};

// The FabricsTarget of an I/O port: a queue whose Connect names the discovery NQN goes to
// `discovery`, every other queue to `nvm`. Both must outlive this object and its queues.
class PortTarget final : public FabricsTarget {
public:
    PortTarget(FabricsTarget* nvm, FabricsTarget* discovery) : nvm_(nvm), discovery_(discovery) {}
    std::unique_ptr<FabricsQueue> NewQueue(const std::string& peer) override;

private:
    FabricsTarget* nvm_;
    FabricsTarget* discovery_;
};

}  // namespace qzns::nvme
