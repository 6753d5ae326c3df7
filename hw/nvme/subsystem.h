// An NVM subsystem: an NQN, the namespaces behind it and the controllers hosts hold. A fabrics
// transport reaches it through NvmeTarget (the FabricsTarget of fabrics-target.h), a PCI
// transport creates its single controller with CreatePciController.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "hw/nvme/ctrl.h"
#include "hw/nvme/discovery-log.h"
#include "hw/nvme/fabrics-target.h"
#include "hw/nvme/namespace.h"
#include "hw/nvme/worker-pool.h"
#include "util/mutex.h"

namespace qzns::nvme {

struct SubsystemConfig {
    std::string nqn;
    std::string serial = "QZNS0001";
    std::string model = "qzns ZNS Controller";
    std::string firmware = "0.1.0";
    uint16_t vid = 0;    // PCI vendor IDs reported in Identify (0: none; keep off quirk tables)
    uint16_t ssvid = 0;
    uint32_t max_nsid = 256;  // Identify Controller NN
    unsigned worker_threads = 8;
    bool allow_any_host = true;
    // Report CMIC.MCTRS / NMIC (several controllers may share namespaces): Linux then uses
    // native multipath for the namespaces. See admin-identify.cc for why this is off by default.
    bool multi_controller = false;
    std::vector<std::string> allowed_hosts;  // host NQNs when !allow_any_host
    ControllerConfig ctrl;
    // The discovery subsystem (NQN kDiscoveryNqn): no namespaces and no I/O queues; its
    // controllers answer the discovery command set (admin-discovery.cc) from discovery_log().
    bool discovery = false;
};

class Subsystem : public std::enable_shared_from_this<Subsystem> {
public:
    static Result<std::shared_ptr<Subsystem>> Create(SubsystemConfig cfg);
    ~Subsystem();

    const std::string& nqn() const { return cfg_.nqn; }
    const SubsystemConfig& config() const { return cfg_; }
    // The discovery subsystem's records; null for an NVM subsystem.
    DiscoveryLog* discovery_log() const { return discovery_log_.get(); }
    WorkerPool& pool() { return *pool_; }

    // ---- namespaces ----
    // Exports a backend: a zoned image gives a ZNS namespace over its sequential zones plus (if
    // it has conventional zones and opts.export_conventional) an NVM namespace over them; a plain
    // image gives one NVM namespace. Returns the NSIDs, zoned first.
    Result<std::vector<uint32_t>> AddBackend(std::shared_ptr<BlockBackend> be, const NamespaceOptions& opts);
    std::shared_ptr<Namespace> GetNamespace(uint32_t nsid) const;
    std::vector<std::shared_ptr<Namespace>> Namespaces() const;  // ascending NSID
    // The smallest non-zero max_append_bytes of the zoned namespaces (0: none limits it).
    // Without a copy of the list: Zone Append asks it for every command.
    uint64_t MinZonedAppendBytes() const;
    // Makes the zone starting at `zslba` of namespace `nsid` Read Only or Offline, durably (the
    // daemon's QMP zone-inject). Controllers see a Zone Descriptor Changed event.
    Status InjectZoneFault(uint32_t nsid, uint64_t zslba, ZoneState state);
    // Persists every backend (NVMe shutdown).
    Status FlushAll();

    // ---- controllers ----
    bool HostAllowed(const std::string& hostnqn) const;
    Result<std::shared_ptr<Controller>> CreateController(TransportKind transport);
    // A PCI transport's controller; hooks must outlive it.
    Result<std::shared_ptr<Controller>> CreatePciController(PciQueueHooks* hooks);
    std::shared_ptr<Controller> FindController(uint16_t cntlid) const;
    std::vector<std::shared_ptr<Controller>> Controllers() const;
    void RemoveController(uint16_t cntlid);

    // Runs the periodic RRL/FRL scan now (tests); normally a timer does it every second.
    void ScanRecommendedLimits();

private:
    explicit Subsystem(SubsystemConfig cfg);
    void OnBackendZoneChanged(BlockBackend* be, uint32_t zone);
    void NotifyZoneChanged(uint32_t nsid, uint64_t zslba);
    uint32_t FreeNsidLocked(uint32_t from) const REQUIRES(mu_);

    SubsystemConfig cfg_;
    const std::unique_ptr<DiscoveryLog> discovery_log_;
    std::shared_ptr<WorkerPool> pool_;
    mutable util::Mutex mu_;
    std::map<uint32_t, std::shared_ptr<Namespace>> namespaces_ GUARDED_BY(mu_);
    std::map<uint16_t, std::weak_ptr<Controller>> controllers_ GUARDED_BY(mu_);
    uint16_t next_cntlid_ GUARDED_BY(mu_) = 1;

    struct TimerState {
        util::Mutex mu;  // with cv: wakes the RRL/FRL timer thread to stop
        util::CondVar cv;
        bool stop GUARDED_BY(mu) = false;
    };
    std::shared_ptr<TimerState> timer_;
    std::thread timer_thread_ GUARDED_BY(mu_);  // started by the first AddBackend needing it
};

// The FabricsTarget a fabrics transport talks to: routes each new queue to a subsystem by the
// SUBNQN of its Connect, runs Connect / Property Get / Property Set / Disconnect, and tears
// down controllers whose keep-alive timer expired.
class NvmeTarget final : public FabricsTarget {
public:
    NvmeTarget();
    ~NvmeTarget() override;

    Status AddSubsystem(std::shared_ptr<Subsystem> subsys);
    // Tears down the subsystem's controllers (their queues get close requests) and forgets it.
    void RemoveSubsystem(const std::string& nqn);
    std::shared_ptr<Subsystem> FindSubsystem(const std::string& nqn) const;

    std::unique_ptr<FabricsQueue> NewQueue(const std::string& peer) override;

    // Runs one keep-alive check now (tests); a thread does this at each controller's deadline.
    void CheckKeepAlive();

    struct Core;  // shared with the queues, which may outlive the target object

private:
    void KeepAliveLoop();
    std::shared_ptr<Core> core_;
    std::thread ka_thread_;
};

}  // namespace qzns::nvme
