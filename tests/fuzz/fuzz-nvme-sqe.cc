// libFuzzer target: random SQEs and data into an NVMe controller (hw/nvme) serving a small
// in-memory zoned image through the FabricsTarget seam, on the admin queue and an I/O queue.
// Finds crashes, sanitizer errors, commands that never complete and completions that report
// more data than the buffer holds. Nothing a host sends may abort the daemon.
//
// Build (clang, from the repository root; no meson needed):
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. \
//     tests/fuzz/fuzz-nvme-sqe.cc hw/nvme/*.cc block/*.cc block/qcow2/*.cc block/zoned/*.cc \
//     util/*.cc -lz -lpthread -o build/fuzz-nvme-sqe
//   ./build/fuzz-nvme-sqe -max_len=4096 -timeout=20
//
// Input format, repeated: 1 byte queue selector (bit 0: 0 = admin, 1 = I/O), 64 bytes SQE,
// 2 bytes little-endian data length (capped at 64 KiB), that many data bytes (zero-padded).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "block/block-backend.h"
#include "block/file-fault.h"
#include "block/file.h"
#include "block/qcow2/qcow2.h"
#include "hw/nvme/subsystem.h"
#include "util/mutex.h"

using namespace qzns;
using namespace qzns::nvme;

namespace {

constexpr char kNqn[] = "nqn.2026-11.io.qzns:fuzz";

struct Waiter {
    util::Mutex mu;  // cv signals done
    util::CondVar cv;
    bool done GUARDED_BY(mu) = false;
    uint32_t c2h GUARDED_BY(mu) = 0;
    // The submitter and the completion each hold one reference: a command left pending
    // (may_pend) completes after RunSync returned, so the last of the two frees it.
    std::atomic<int> refs{2};
};

void Release(Waiter* w) {
    if (w->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete w;
}

// Submits and waits; returns false if the command did not complete in time.
bool RunSync(FabricsQueue& q, const SqeBytes& sqe, std::vector<uint8_t>& buf, bool may_pend) {
    // Completions hold only trivially copyable captures (util::InlineFunction).
    auto* w = new Waiter();
    size_t cap = buf.size();
    q.Submit(sqe, std::span<uint8_t>(buf.data(), buf.size()), [w, cap](const CqeBytes&, uint32_t n) {
        if (n > cap) std::abort();  // reported more controller-to-host data than the buffer
        {
            util::MutexLock lk(w->mu);
            if (w->done) std::abort();  // completed twice
            w->done = true;
            w->c2h = n;
            w->cv.NotifyAll();
        }
        Release(w);
    });
    bool ok;
    {
        util::MutexLock lk(w->mu);
        ok = w->cv.WaitFor(w->mu, std::chrono::seconds(may_pend ? 0 : 10),
                           [&]() REQUIRES(w->mu) { return w->done; });
    }
    // A command that neither completed nor may pend keeps its waiter: the completion
    // (if it ever comes) must find it alive, and the fuzzer reports the hang anyway.
    if (ok || may_pend) Release(w);
    return ok || may_pend;
}

struct World {
    std::unique_ptr<File> file = NewMemFile();
    std::shared_ptr<BlockBackend> be;
    std::shared_ptr<Subsystem> subsys;
    std::unique_ptr<NvmeTarget> target;

    World() {
        qcow2::CreateOptions co;
        co.size = 8 << 20;
        co.cluster_size = 65536;
        qcow2::ZonedGeometry g;
        g.profile = qcow2::ZonedProfile::kZns;
        g.zone_size = 1 << 20;
        g.zone_capacity = 768 << 10;
        g.nr_conv_zones = 1;
        g.max_open_zones = 3;
        g.max_active_zones = 4;
        g.max_append_bytes = 32 << 10;
        g.zd_extension_size = 64;
        co.zoned = g;
        if (!qcow2::Create(BorrowFile(file.get()), co).ok()) std::abort();
        auto img = qcow2::Image::Open(BorrowFile(file.get()), {.write = true}, nullptr);
        if (!img.ok()) std::abort();
        auto b = BlockBackend::OpenDriver(std::move(*img));
        if (!b.ok()) std::abort();
        be = std::move(*b);
        SubsystemConfig cfg;
        cfg.nqn = kNqn;
        cfg.worker_threads = 2;
        cfg.ctrl.mdts = 4;
        auto s = Subsystem::Create(cfg);
        if (!s.ok()) std::abort();
        subsys = *s;
        if (!subsys->AddBackend(be, {}).ok()) std::abort();
        target = std::make_unique<NvmeTarget>();
        if (!target->AddSubsystem(subsys).ok()) std::abort();
    }
};

SqeBytes Fabrics(uint8_t fctype) {
    SqeBytes s{};
    s.b[0] = 0x7f;
    s.b[4] = fctype;
    return s;
}

std::vector<uint8_t> MakeConnectData(uint16_t cntlid) {
    std::vector<uint8_t> d(1024, 0);
    d[16] = uint8_t(cntlid);
    d[17] = uint8_t(cntlid >> 8);
    std::memcpy(d.data() + 256, kNqn, sizeof(kNqn) - 1);
    std::memcpy(d.data() + 512, "nqn.fuzz.host", 13);
    return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static World* world = new World();
    auto admin = world->target->NewQueue("fuzz");
    auto io = world->target->NewQueue("fuzz-io");
    // Connect QID 0, enable (CSS 110b), connect QID 1.
    SqeBytes c = Fabrics(0x01);
    c.b[44] = 31;
    std::vector<uint8_t> cd = MakeConnectData(0xffff);
    uint16_t cntlid = 0;
    {
        auto* w = new Waiter();
        uint16_t* out = &cntlid;
        admin->Submit(c, cd, [out, w](const CqeBytes& q, uint32_t) {
            *out = uint16_t(q.b[0] | q.b[1] << 8);
            {
                util::MutexLock lk(w->mu);
                w->done = true;
                w->cv.NotifyAll();
            }
            Release(w);
        });
        {
            util::MutexLock lk(w->mu);
            while (!w->done) w->cv.Wait(w->mu);
        }
        Release(w);
    }
    std::vector<uint8_t> none;
    SqeBytes cc = Fabrics(0x00);
    cc.b[44] = 0x14;
    uint32_t ccv = (6u << 16) | (4u << 20) | (6u << 4) | 1;
    std::memcpy(cc.b + 48, &ccv, 4);
    if (!RunSync(*admin, cc, none, false)) std::abort();
    c.b[42] = 1;
    c.b[44] = 63;
    cd = MakeConnectData(cntlid);
    if (!RunSync(*io, c, cd, false)) std::abort();

    size_t pos = 0;
    while (pos + 67 <= size) {
        bool on_io = data[pos] & 1;
        SqeBytes sqe;
        std::memcpy(sqe.b, data + pos + 1, 64);
        size_t len = std::min<size_t>(size_t(data[pos + 65] | data[pos + 66] << 8), 65536);
        pos += 67;
        std::vector<uint8_t> buf(len, 0);
        size_t n = std::min(len, size - pos);
        if (n) std::memcpy(buf.data(), data + pos, n);  // buf.data() may be null when empty
        pos += n;
        bool may_pend = !on_io && sqe.b[0] == 0x0c;  // AERs wait for events
        if (!RunSync(on_io ? *io : *admin, sqe, buf, may_pend)) std::abort();  // a command never completed
    }
    io->Disconnect();
    admin->Disconnect();
    // Let pending AER completions (aborted by the disconnect) drain before buffers go away.
    world->subsys->pool().Post([] {});
    return 0;
}
