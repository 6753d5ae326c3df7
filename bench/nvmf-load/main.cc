// qzns-nvmf-load: a host-side NVMe/TCP load generator with data verification. H hosts (distinct
// host NQNs) x Q I/O queues, each a real NVMe/TCP connection, keep QD commands in flight
// against the zones of a ZNS namespace: writes at the write pointer, appends, reads checked byte
// for byte against what was acknowledged, resets and Report Zones checked against the model.
// Dropped connections are counted and reconnected. Prints a line per second and a JSON summary.
#include <getopt.h>
#include <unistd.h>

#include <algorithm>
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
#include "bench/nvmf-load/conn.h"
#include "bench/nvmf-load/session.h"
#include "bench/nvmf-load/tcp-port.h"

using namespace qzns::load;

namespace {

struct Target {
    std::string addr = "127.0.0.1";
    uint16_t port = 4420;
    std::string nqn;
    Geometry g;
};

struct Options : RunOptions {
    std::vector<Target> targets;
    uint32_t hosts = 1, queues = 1;
    std::string save_model, verify_model;
    bool corrupt_model = false;
};

struct Host {
    uint32_t index = 0;
    Target* target = nullptr;
    std::string nqn;
    std::vector<std::unique_ptr<QueueWorker>> queues;
};

std::atomic<bool> g_stop{false};

void Usage() {
    fprintf(stderr,
            "usage: qzns-nvmf-load --target ADDR:PORT:NQN [--target ...] [options]\n"
            "  --hosts N            hosts, each its own host NQN and controller (default 1)\n"
            "  --queues N           I/O queues (connections) per host (default 1)\n"
            "%s"
            "  --save-model FILE    at the end, save what every zone must hold\n"
            "  --verify-model FILE  write nothing: read back and check a saved model, then exit\n"
            "  --corrupt-model      with --verify-model: alter one block of the model first (the\n"
            "                       run must then report a verify failure)\n",
            kRunOptionsUsage);
}

bool ParseTarget(const char* s, Target* t) {
    std::string v(s);
    const size_t a = v.find(':'), b = a == std::string::npos ? a : v.find(':', a + 1);
    if (b == std::string::npos) return false;
    t->addr = v.substr(0, a);
    t->port = static_cast<uint16_t>(std::stoul(v.substr(a + 1, b - a - 1)));
    t->nqn = v.substr(b + 1);
    return !t->nqn.empty();
}

bool Bootstrap(const Options& o, Target* t, std::string* err) {
    Conn c;
    Session s(c);
    uint16_t cntlid = 0;
    if (!c.Open(t->addr, t->port, err) ||
        !s.Connect(0, 31, t->nqn, "nqn.2026-12.io.qzns:nvmf-load:probe", 0xffff, &cntlid, err) || !s.Enable(err) ||
        !s.Identify(o.nsid, &t->g, err))
        return false;
    if (o.w.rw == Rw::kMixed && !t->g.zsze) {
        *err = "namespace " + std::to_string(o.nsid) + " of " + t->nqn + " has no zones";
        return false;
    }
    return true;
}

// Every host: admin queue, CC.EN, then one thread per I/O queue; when a connection drops (the
// export went away) all of the host's queues stop, and the host connects again until it works.
void RunHost(const Options& o, Host& h, Stats& st) {
    bool first = true;
    while (!g_stop.load()) {
        Conn admin;
        Session s(admin);
        std::string err;
        uint16_t cntlid = 0;
        if (!admin.Open(h.target->addr, h.target->port, &err) ||
            !s.Connect(0, 31, h.target->nqn, h.nqn, h.index, &cntlid, &err) || !s.Enable(&err)) {
            st.connect_failures.fetch_add(1);
            usleep(100000);
            continue;
        }
        if (!first) st.reconnects.fetch_add(1);
        first = false;
        std::atomic<bool> broken{false};
        std::vector<std::thread> threads;
        for (size_t q = 0; q < h.queues.size(); q++) {
            threads.emplace_back([&, q] {
                Conn c;
                Session qs(c);
                std::string e;
                uint16_t id = cntlid;
                if (!c.Open(h.target->addr, h.target->port, &e) ||
                    !qs.Connect(static_cast<uint16_t>(q + 1), static_cast<uint16_t>(o.w.qd), h.target->nqn, h.nqn,
                                h.index, &id, &e)) {
                    fprintf(stderr, "nvmf-load: host %u queue %zu: %s\n", h.index, q + 1, e.c_str());
                    broken = true;
                    return;
                }
                TcpQueuePort port(c, h.target->g);
                if (!h.queues[q]->Run(port, g_stop, broken)) broken = true;
            });
        }
        for (auto& t : threads) t.join();
        bool done = o.w.verify_only;
        for (auto& q : h.queues) done = done && q->finished();
        if (done) return;
    }
}

const char* FaultName(Fault f) { return f == Fault::kOffline ? "offline" : f == Fault::kReadOnly ? "read-only" : "none"; }

void SaveModel(const std::string& path, const std::vector<Host>& hosts, const Options& o) {
    std::ofstream f(path);
    for (const Host& h : hosts) {
        const uint32_t t = static_cast<uint32_t>(h.target - &o.targets[0]);
        for (const auto& q : h.queues) {
            for (const Zone& z : q->zones) {
                if (z.phase == Phase::kUnknown || z.cap == 0) continue;
                std::vector<std::string> runs;
                for (uint64_t i = 0; i < z.blk.size();) {
                    if (!z.blk[i]) {
                        i++;
                        continue;
                    }
                    uint64_t n = 1;
                    while (i + n < z.blk.size() && z.blk[i + n] &&
                           BlockTag(z.blk[i + n]) == BlockTag(z.blk[i]) &&
                           BlockIdx(z.blk[i + n]) == BlockIdx(z.blk[i]) + n)
                        n++;
                    runs.push_back(std::to_string(i) + " " + std::to_string(n) + " " +
                                   std::to_string(BlockTag(z.blk[i])) + " " + std::to_string(BlockIdx(z.blk[i])));
                    i += n;
                }
                f << "zone " << t << " " << z.zslba << " " << z.cap << " " << z.gen << " "
                  << static_cast<int>(z.fault) << " " << (z.append_mode ? z.reserved : z.wp) << " "
                  << (z.dirty || z.phase == Phase::kReset ? 1 : 0) << " " << runs.size() << "\n";
                for (const auto& r : runs) f << r << "\n";
            }
        }
    }
}

// Loads a saved model into one queue per target that owns all of the target's zones.
bool LoadModel(const Options& o, std::vector<Host>& hosts) {
    std::ifstream f(o.verify_model);
    if (!f) return false;
    std::string word;
    bool corrupted = !o.corrupt_model;
    while (f >> word) {
        if (word != "zone") return false;
        uint32_t t = 0, gen = 0;
        int fault = 0, dirty = 0;
        uint64_t zslba = 0, cap = 0, written = 0, nruns = 0;
        f >> t >> zslba >> cap >> gen >> fault >> written >> dirty >> nruns;
        if (!f || t >= hosts.size()) return false;
        QueueWorker& q = *hosts[t].queues[0];
        const uint64_t zi = zslba / hosts[t].target->g.zsze;
        if (zi >= q.zones.size()) return false;
        Zone& z = q.zones[zi];
        z.cap = cap;
        z.gen = gen;
        z.fault = static_cast<Fault>(fault);
        z.blk.assign(cap, 0);
        z.wp = z.reserved = written;
        z.dirty = dirty != 0;
        z.phase = Phase::kSweep;
        for (uint64_t r = 0; r < nruns; r++) {
            uint64_t off = 0, n = 0;
            uint32_t tag = 0, idx = 0;
            f >> off >> n >> tag >> idx;
            if (!f || off + n > cap) return false;
            for (uint64_t i = 0; i < n; i++) z.Record(off + i, tag, idx + static_cast<uint32_t>(i));
            if (!corrupted && n > 0) {
                z.blk[off] ^= 1;  // a model that is wrong about one block must be caught
                corrupted = true;
            }
        }
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    enum { kTarget = 256, kHosts, kQueues, kSave, kVerify, kCorrupt, kHelp };
    const std::vector<option> own = {
        {"target", required_argument, nullptr, kTarget}, {"hosts", required_argument, nullptr, kHosts},
        {"queues", required_argument, nullptr, kQueues}, {"save-model", required_argument, nullptr, kSave},
        {"verify-model", required_argument, nullptr, kVerify}, {"corrupt-model", no_argument, nullptr, kCorrupt},
        {"help", no_argument, nullptr, kHelp},
    };
    const int rc = ParseCommandLine(argc, argv, own, &o, [&](int c, const char* arg) {
        const unsigned long v = arg ? std::strtoul(arg, nullptr, 0) : 0;
        switch (c) {
            case kTarget: {
                Target t;
                if (!ParseTarget(arg, &t)) {
                    fprintf(stderr, "bad --target '%s' (ADDR:PORT:NQN)\n", arg);
                    return 2;
                }
                o.targets.push_back(t);
                break;
            }
            case kHosts: o.hosts = static_cast<uint32_t>(v); break;
            case kQueues: o.queues = static_cast<uint32_t>(v); break;
            case kSave: o.save_model = arg; break;
            case kVerify: o.verify_model = arg; o.w.verify_only = true; break;
            case kCorrupt: o.corrupt_model = true; break;
            default: Usage(); return c == kHelp ? 0 : 2;
        }
        return -1;
    });
    if (rc >= 0) return rc;
    if (o.targets.empty() || o.hosts == 0 || o.queues == 0 || o.w.qd == 0 || o.w.qd > 1024 || o.w.bs == 0) {
        Usage();
        return 2;
    }
    if (o.w.verify_only) {
        o.hosts = static_cast<uint32_t>(o.targets.size());
        o.queues = 1;
    }
    for (Target& t : o.targets) {
        std::string err;
        if (!Bootstrap(o, &t, &err)) {
            fprintf(stderr, "nvmf-load: %s:%u %s: %s\n", t.addr.c_str(), t.port, t.nqn.c_str(), err.c_str());
            return 2;
        }
        if (o.w.bs % t.g.lba_size || (t.g.max_xfer && o.w.bs > t.g.max_xfer)) {
            fprintf(stderr, "nvmf-load: --bs must be a multiple of %u and at most %u\n", t.g.lba_size, t.g.max_xfer);
            return 2;
        }
    }

    // Hosts go round-robin over the targets; each target's zones are split among its queues.
    Stats st;
    std::vector<Host> hosts(o.hosts);
    for (uint32_t h = 0; h < o.hosts; h++) {
        hosts[h].index = h;
        hosts[h].target = &o.targets[h % o.targets.size()];
        char nqn[96];
        snprintf(nqn, sizeof(nqn), "nqn.2026-12.io.qzns:nvmf-load:host%04u", h);
        hosts[h].nqn = nqn;
    }
    for (size_t t = 0; t < o.targets.size(); t++) {
        const Geometry& g = o.targets[t].g;
        uint32_t nq = 0;
        for (const Host& h : hosts) nq += h.target == &o.targets[t] ? o.queues : 0;
        const uint32_t zpq = o.w.rw != Rw::kMixed ? 0
                             : o.w.verify_only    ? g.nzones()
                             : o.zones_per_queue  ? o.zones_per_queue
                                                  : g.nzones() / nq;
        if (o.w.rw == Rw::kMixed && (zpq == 0 || uint64_t{zpq} * nq > g.nzones())) {
            fprintf(stderr, "nvmf-load: %s has %u zones, not enough for %u queues x %u zones\n",
                    o.targets[t].nqn.c_str(), g.nzones(), nq, zpq);
            return 2;
        }
        uint32_t next = 0;
        for (Host& h : hosts) {
            if (h.target != &o.targets[t]) continue;
            for (uint32_t q = 0; q < o.queues; q++, next++) {
                auto w = std::make_unique<QueueWorker>(o.w, h.target->g, st, Mix64(o.seed * 1000003 + next));
                w->TakeShare(next, nq, zpq, o.seed);
                h.queues.push_back(std::move(w));
            }
        }
    }
    if (o.w.verify_only && !LoadModel(o, hosts)) {
        fprintf(stderr, "nvmf-load: cannot load the model %s\n", o.verify_model.c_str());
        return 2;
    }

    std::vector<std::thread> threads;
    for (Host& h : hosts) threads.emplace_back([&] { RunHost(o, h, st); });

    std::atomic<int> alive{static_cast<int>(threads.size())};
    std::thread waiter([&] {
        for (auto& t : threads) t.join();
        alive = 0;
    });
    const RunReport r = ReportEverySecond(st, o.w.verify_only ? -1 : o.runtime, g_stop, alive);
    waiter.join();
    if (!o.save_model.empty()) SaveModel(o.save_model, hosts, o);

    std::string faulted;
    for (const Host& h : hosts)
        for (const auto& q : h.queues)
            for (const Zone& z : q->zones)
                if (z.fault != Fault::kNone) {
                    char b[96];
                    snprintf(b, sizeof(b), "%s[%zu, %llu, \"%s\"]", faulted.empty() ? "" : ", ",
                             static_cast<size_t>(h.target - &o.targets[0]),
                             static_cast<unsigned long long>(z.zslba / h.target->g.zsze), FaultName(z.fault));
                    faulted += b;
                }
    std::ostringstream j;
    j << "{\"hosts\": " << o.hosts << ", \"queues\": " << o.queues << ", \"qd\": " << o.w.qd << ", \"bs\": " << o.w.bs
      << ", " << SummaryFields(st, r) << ", \"faulted_zones\": [" << faulted << "]}";
    printf("%s\n", j.str().c_str());
    if (!o.json_path.empty()) std::ofstream(o.json_path) << j.str() << "\n";
    return RunPassed(st) ? 0 : 1;
}
