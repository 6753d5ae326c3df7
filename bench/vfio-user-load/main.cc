// qzns-vfio-user-load: a host-side vfio-user load generator with data verification. It is
// the guest's side of a QEMU vfio-user-pci device without QEMU or a guest: it connects to the
// daemon's vfio-user socket, shares its "guest memory" (a sealed memfd) by DMA_MAP, gives
// MSI-X eventfds, enables the NVMe controller through BAR0 messages, creates one I/O queue
// pair per thread in that memory, optionally turns on shadow doorbells (Doorbell Buffer
// Config, as Linux does), and runs the same verified zoned mix or benchmark patterns as
// qzns-nvmf-load (bench/load/queue.h). Prints a line per second and a JSON summary.
#include <getopt.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/load/queue.h"
#include "bench/load/report.h"
#include "bench/load/run-options.h"
#include "bench/load/stats.h"
#include "bench/vfio-user-load/client.h"
#include "bench/vfio-user-load/guest-memory.h"
#include "bench/vfio-user-load/pci-controller.h"
#include "bench/vfio-user-load/pci-port.h"

using namespace qzns::load;

namespace {

// Guest physical addresses of the two memfds (the admin one, mapped before the controller is
// enabled, and the I/O one, sized once Identify told the zone count): above 4 GiB, as QEMU
// puts RAM beyond the PCI hole, so an IOVA truncated to 32 bits would fault instead of landing
// in our memory.
constexpr uint64_t kAdminMemBase = 1ull << 32, kIoMemBase = 2ull << 32;
constexpr size_t kAdminMemSize = 64 * 1024;
constexpr uint32_t kMaxQueues = 15;  // one MSI-X vector each, plus the admin queue's: 16

struct Options : RunOptions {
    std::string socket;
    uint32_t queues = 1;
    bool shadow_doorbells = true;
};

std::atomic<bool> g_stop{false};

void Usage() {
    fprintf(stderr,
            "usage: qzns-vfio-user-load --socket PATH [options]\n"
            "  --queues N           I/O queue pairs, one thread each (default 1, at most %u)\n"
            "  --shadow-doorbells on|off  Doorbell Buffer Config when offered (default on)\n"
            "%s",
            kMaxQueues, kRunOptionsUsage);
}

}  // namespace

int main(int argc, char** argv) {
    signal(SIGPIPE, SIG_IGN);  // a server that went away is an error return, not a signal
    Options o;
    enum { kSocket = 256, kQueues, kShadow, kHelp };
    const std::vector<option> own = {
        {"socket", required_argument, nullptr, kSocket}, {"queues", required_argument, nullptr, kQueues},
        {"shadow-doorbells", required_argument, nullptr, kShadow}, {"help", no_argument, nullptr, kHelp},
    };
    const int rc = ParseCommandLine(argc, argv, own, &o, [&](int c, const char* arg) {
        switch (c) {
            case kSocket: o.socket = arg; break;
            case kQueues: o.queues = static_cast<uint32_t>(std::strtoul(arg, nullptr, 0)); break;
            case kShadow:
                if (std::strcmp(arg, "on") != 0 && std::strcmp(arg, "off") != 0) {
                    fprintf(stderr, "bad --shadow-doorbells '%s' (on or off)\n", arg);
                    return 2;
                }
                o.shadow_doorbells = std::strcmp(arg, "on") == 0;
                break;
            default: Usage(); return c == kHelp ? 0 : 2;
        }
        return -1;
    });
    if (rc >= 0) return rc;
    if (o.socket.empty() || o.queues == 0 || o.queues > kMaxQueues || o.w.qd == 0 || o.w.qd > 1023 || o.w.bs == 0) {
        Usage();
        return 2;
    }

    VfioUserClient client;
    GuestMemory admin_mem, mem;
    PciController ctrl(client, admin_mem);
    Geometry g;
    std::string err;
    if (!client.Connect(o.socket, &err) || !admin_mem.Create(kAdminMemBase, kAdminMemSize, &err) ||
        !client.DmaMap(admin_mem.fd(), 0, admin_mem.base(), admin_mem.size(), &err) ||
        !ctrl.Enable(o.queues, &err) || !ctrl.Identify(o.nsid, &g, &err)) {
        fprintf(stderr, "vfio-user-load: %s: %s\n", o.socket.c_str(), err.c_str());
        return 2;
    }
    if (o.w.bs % g.lba_size || (g.max_xfer && o.w.bs > g.max_xfer)) {
        fprintf(stderr, "vfio-user-load: --bs must be a multiple of %u and at most %u\n", g.lba_size, g.max_xfer);
        return 2;
    }
    if (o.w.rw == Rw::kMixed && !g.zsze) {
        fprintf(stderr, "vfio-user-load: namespace %u has no zones\n", o.nsid);
        return 2;
    }
    const uint32_t zpq = o.w.rw != Rw::kMixed ? 0 : o.zones_per_queue ? o.zones_per_queue : g.nzones() / o.queues;
    if (o.w.rw == Rw::kMixed && (zpq == 0 || uint64_t{zpq} * o.queues > g.nzones())) {
        fprintf(stderr, "vfio-user-load: %u zones, not enough for %u queues x %u zones\n", g.nzones(), o.queues, zpq);
        return 2;
    }
    // Every command's buffer holds the largest transfer: a write/read or a Report Zones of the
    // queue's zones.
    const uint32_t max_bytes = std::max(o.w.bs, 64 + 64 * zpq);
    const uint32_t entries = std::min(std::max(o.w.qd + 1, 64u), ctrl.max_entries());
    const size_t per_queue = size_t{o.w.qd} * (((max_bytes + 4095) & ~4095u) + 4096) + size_t{entries} * 80 + 8192;
    if (!mem.Create(kIoMemBase, o.queues * per_queue, &err) ||
        !client.DmaMap(mem.fd(), 0, mem.base(), mem.size(), &err)) {
        fprintf(stderr, "vfio-user-load: %s\n", err.c_str());
        return 2;
    }
    std::vector<QueueRings> rings;
    if (!ctrl.CreateQueues(o.queues, entries, mem, &rings, &err)) {
        fprintf(stderr, "vfio-user-load: %s\n", err.c_str());
        return 2;
    }
    const bool shadow = o.shadow_doorbells && ctrl.EnableShadowDoorbells(&err);
    if (!err.empty()) {
        fprintf(stderr, "vfio-user-load: Doorbell Buffer Config: %s\n", err.c_str());
        return 2;
    }
    if (o.shadow_doorbells && !shadow) fprintf(stderr, "vfio-user-load: the controller has no shadow doorbells\n");

    Stats st;
    std::vector<std::unique_ptr<QueueWorker>> workers;
    std::vector<std::unique_ptr<PciQueuePort>> ports;
    for (uint32_t q = 0; q < o.queues; q++) {
        workers.push_back(std::make_unique<QueueWorker>(o.w, g, st, Mix64(o.seed * 1000003 + q)));
        workers.back()->TakeShare(q, o.queues, zpq, o.seed);
        ports.push_back(std::make_unique<PciQueuePort>(client, rings[q], ctrl.shadow(), ctrl.eventidx()));
        if (!ports.back()->Init(mem, o.w.qd, max_bytes, &err)) {
            fprintf(stderr, "vfio-user-load: %s\n", err.c_str());
            return 2;
        }
    }

    std::atomic<bool> broken{false};
    std::vector<std::thread> threads;
    for (uint32_t q = 0; q < o.queues; q++)
        threads.emplace_back([&, q] {
            if (!workers[q]->Run(*ports[q], g_stop, broken)) broken = true;
        });
    std::atomic<int> alive{static_cast<int>(threads.size())};
    std::thread waiter([&] {
        for (auto& t : threads) t.join();
        alive = 0;
    });
    const RunReport r = ReportEverySecond(st, o.runtime, g_stop, alive);
    waiter.join();
    // Only once nothing is in flight; a controller that cannot delete its queues or shut
    // down fails the run.
    bool shut = false;
    if (!broken.load()) {
        shut = ctrl.Shutdown(o.queues, &err);
        if (!shut) fprintf(stderr, "vfio-user-load: shutdown: %s\n", err.c_str());
    }

    uint64_t mmio = 0, missed = 0;
    for (const auto& p : ports) {
        mmio += p->mmio_doorbells();
        missed += p->missed_interrupts();
    }
    std::ostringstream j;
    j << "{\"transport\": \"vfio-user\", \"queues\": " << o.queues << ", \"qd\": " << o.w.qd << ", \"bs\": " << o.w.bs
      << ", \"shadow_doorbells\": " << (shadow ? "true" : "false") << ", \"mmio_doorbells\": " << mmio
      << ", \"missed_interrupts\": " << missed << ", \"clean_shutdown\": " << (shut ? "true" : "false") << ", "
      << SummaryFields(st, r) << "}";
    printf("%s\n", j.str().c_str());
    if (!o.json_path.empty()) std::ofstream(o.json_path) << j.str() << "\n";
    return RunPassed(st) && shut && missed == 0 ? 0 : 1;
}
