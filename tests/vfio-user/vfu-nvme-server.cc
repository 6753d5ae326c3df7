// Serves a qzns zoned image as a PCI NVMe controller over vfio-user, for guest tests until the
// storage daemon's `--export type=vfio-user` exists:
//   vfu-nvme-server SOCKET IMAGE [--trace] [--lba-size 512|4096]
// Stops (and flushes) on SIGINT/SIGTERM.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "block/block-backend.h"
#include "hw/nvme/subsystem.h"
#include "hw/vfio-user/nvme-pci.h"
#include "hw/vfio-user/server.h"

using namespace qzns;

namespace {
vfu::VfioUserServer* g_server;
void OnSignal(int) {
    if (g_server) g_server->Stop();
}
int Fail(const Status& st) {
    fprintf(stderr, "vfu-nvme-server: %s\n", st.message().c_str());
    return 1;
}
}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s SOCKET IMAGE [--trace] [--lba-size N]\n", argv[0]);
        return 2;
    }
    bool trace = false;
    uint32_t lba = 4096;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--trace")) trace = true;
        else if (!strcmp(argv[i], "--lba-size") && i + 1 < argc) lba = uint32_t(atoi(argv[++i]));
    }
    BlockBackendOptions bo;
    bo.filename = argv[2];
    auto be = BlockBackend::Open(bo);
    if (!be.ok()) return Fail(be.status());
    nvme::SubsystemConfig sc;
    sc.nqn = "nqn.2026-11.io.qzns:vfu0";
    sc.ctrl.transport = nvme::TransportKind::kPci;
    sc.ctrl.msix_vectors = 16;
    sc.ctrl.max_io_queues = 64;
    auto subsys = nvme::Subsystem::Create(sc);
    if (!subsys.ok()) return Fail(subsys.status());
    nvme::NamespaceOptions no;
    no.lba_size = lba;
    auto nsids = (*subsys)->AddBackend(std::shared_ptr<BlockBackend>(std::move(be).value()), no);
    if (!nsids.ok()) return Fail(nsids.status());
    vfu::NvmePciOptions po;
    po.on_error = [](uint16_t qid, uint16_t cid, uint16_t st) {
        fprintf(stderr, "vfu-nvme-server: qid %u cid %u status 0x%x (%s)\n", qid, cid, st,
                nvme::StatusName(st));
    };
    auto dev = vfu::NvmePciDevice::Create(*subsys, po);
    if (!dev.ok()) return Fail(dev.status());
    vfu::ServerOptions opts;
    if (trace) opts.trace = [](const std::string& l) { fprintf(stdout, "%s\n", l.c_str()); fflush(stdout); };
    vfu::VfioUserServer server(dev->get(), opts);
    g_server = &server;
    signal(SIGINT, OnSignal);
    signal(SIGTERM, OnSignal);
    Status st = server.Listen(argv[1]);
    if (!st.ok()) return Fail(st);
    fprintf(stderr, "vfu-nvme-server: serving %s (%zu namespaces) on %s\n", argv[2],
            nsids->size(), argv[1]);
    st = server.Run();
    auto s = (*dev)->stats();
    fprintf(stderr,
            "vfu-nvme-server: commands=%llu completions=%llu dropped=%llu overflow=%llu "
            "errors=%llu dptr_errors=%llu zero_copy=%llu bounced=%llu bad_doorbells=%llu irqs=%llu\n",
            (unsigned long long)s.commands, (unsigned long long)s.completions,
            (unsigned long long)s.completions_dropped, (unsigned long long)s.cq_overflow, (unsigned long long)s.error_completions,
            (unsigned long long)s.dptr_errors, (unsigned long long)s.zero_copy,
            (unsigned long long)s.bounced, (unsigned long long)s.bad_doorbells,
            (unsigned long long)server.stats().irqs_raised.load());
    Status fl = (*subsys)->FlushAll();
    if (!fl.ok()) return Fail(fl);
    return st.ok() ? 0 : 1;
}
