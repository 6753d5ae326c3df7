// Serves TestPciDevice on a Unix socket and prints every vfio-user message, for attaching real
// QEMU and recording what it sends:
//   vfu-trace-server /tmp/vfu.sock [--irq-after-ms N]
// Stops on SIGINT/SIGTERM. --irq-after-ms raises MSI-X vector 0 every
// N ms once vectors are set up (to see interrupts counted in the guest's /proc/interrupts).
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "hw/vfio-user/server.h"
#include "tests/vfio-user/test-pci-device.h"

using namespace qzns::vfu;

namespace {
VfioUserServer* g_server;
void OnSignal(int) {
    if (g_server) g_server->Stop();
}
}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s SOCKET [--irq-after-ms N]\n", argv[0]);
        return 2;
    }
    int irq_ms = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--irq-after-ms") && i + 1 < argc) irq_ms = atoi(argv[++i]);
    }
    testing::TestPciDevice dev;
    ServerOptions opts;
    auto t0 = std::chrono::steady_clock::now();
    opts.trace = [t0](const std::string& line) {
        double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        fprintf(stdout, "%9.3f %s\n", t, line.c_str());
        fflush(stdout);
    };
    VfioUserServer server(&dev, opts);
    g_server = &server;
    signal(SIGINT, OnSignal);
    signal(SIGTERM, OnSignal);
    qzns::Status st = server.Listen(argv[1]);
    if (!st.ok()) {
        fprintf(stderr, "listen: %s\n", st.message().c_str());
        return 1;
    }
    std::atomic<bool> done{false};
    std::thread irq;
    if (irq_ms > 0) {
        irq = std::thread([&] {
            while (!done) {
                std::this_thread::sleep_for(std::chrono::milliseconds(irq_ms));
                if (IrqSink* s = dev.irq(); s && s->MsixVectorsEnabled() > 0) s->Trigger(0);
            }
        });
    }
    st = server.Run();
    done = true;
    if (irq.joinable()) irq.join();
    const ServerStats& s = server.stats();
    fprintf(stdout, "stats: errors=%llu dropped=%llu closes=%llu irqs=%llu/%llu resets=%d\n",
            (unsigned long long)s.error_replies.load(), (unsigned long long)s.dropped_errors.load(),
            (unsigned long long)s.protocol_closes.load(), (unsigned long long)s.irqs_raised.load(),
            (unsigned long long)s.irqs_dropped.load(), dev.resets.load());
    return st.ok() ? 0 : 1;
}
