// qzns-storage-daemon: serves zoned (and plain) images to hosts, in qemu-storage-daemon's idiom:
//   qzns-storage-daemon --blockdev driver=qcow2,node-name=zns0,file=zns.qcow2
//       --export type=nvme-tcp,id=tcp0,node-name=zns0,addr=127.0.0.1,port=4420,nqn=NQN
//       (or --export type=vfio-user,id=vu0,node-name=zns0,socket=/run/zns.sock for QEMU >= 10.1)
//       [--export ...] [--qmp unix:/path/qmp.sock] [--pidfile FILE]
// SIGTERM/SIGINT/QMP quit: stop exports (in-flight I/O completes), persist zone state, mark the
// images clean, exit 0.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "qapi/qmp-server.h"
#include "storage-daemon/block-nodes.h"
#include "storage-daemon/export-types.h"
#include "storage-daemon/exports.h"
#include "storage-daemon/qmp-commands.h"

namespace {

void Usage(FILE* out) {
    fprintf(out,
            "usage: qzns-storage-daemon [options]\n"
            "  --blockdev driver=qcow2|raw,node-name=NAME,file=PATH[,read-only=on][,cache.direct=on]\n"
            "  --export type=nvme-tcp,id=ID,node-name=NAME,nqn=NQN[,addr=127.0.0.1][,port=4420][,nsid=N]\n"
            "           [,lba-size=512|4096][,allow-host=HOSTNQN]...[,discovery-port=8009]\n"
            "  --export type=vfio-user,id=ID,node-name=NAME,socket=PATH[,nsid=N][,lba-size=512|4096]\n"
            "           [,shadow-doorbells=on|off]\n"
            "  --qmp unix:PATH | tcp:HOST:PORT\n"
            "  --pidfile FILE\n"
            "  -h, --help   -V, --version\n");
}

int Die(const std::string& msg) {
    fprintf(stderr, "qzns-storage-daemon: %s\n", msg.c_str());
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace qzns;
    using namespace qzns::daemon;
    std::vector<std::pair<std::string, std::string>> items;  // in command-line order
    std::string qmp_addr, pidfile;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        std::string val;
        auto eq = a.find('=');
        std::string name = a;
        if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
            name = a.substr(0, eq);
            val = a.substr(eq + 1);
        } else if (a == "--blockdev" || a == "--export" || a == "--qmp" || a == "--pidfile") {
            if (i + 1 >= argc) return Die("option '" + a + "' requires an argument");
            val = argv[++i];
        }
        if (name == "-h" || name == "--help") {
            Usage(stdout);
            return 0;
        } else if (name == "-V" || name == "--version") {
            printf("qzns-storage-daemon version 0.1.0\n");
            return 0;
        } else if (name == "--blockdev" || name == "--export") {
            items.emplace_back(name, val);
        } else if (name == "--qmp") {
            qmp_addr = val;
        } else if (name == "--pidfile") {
            pidfile = val;
        } else {
            Usage(stderr);
            return Die("unknown option '" + a + "'");
        }
    }

    // Every thread started from here on inherits the blocked signals; main waits for them.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    signal(SIGPIPE, SIG_IGN);

    BlockNodes nodes;
    std::unique_ptr<qmp::QmpServer> qmp;
    ExportContext ctx;
    ctx.nodes = &nodes;
    qmp::QmpServer* qmp_raw = nullptr;
    ctx.emit = [&qmp_raw](const std::string& ev, Json data) {
        if (qmp_raw) qmp_raw->Emit(ev, std::move(data));
    };
    Exports exports(ctx);
    RegisterExportTypes(exports);

    auto shutdown = [&]() -> int {
        Status st = exports.StopAll();
        Status st2 = nodes.CloseAll();
        if (qmp) qmp->Stop();
        if (!pidfile.empty()) unlink(pidfile.c_str());
        if (!st.ok()) fprintf(stderr, "qzns-storage-daemon: %s\n", st.message().c_str());
        if (!st2.ok()) fprintf(stderr, "qzns-storage-daemon: %s\n", st2.message().c_str());
        return st.ok() && st2.ok() ? 0 : 1;
    };

    for (auto& [kind, spec] : items) {
        Status st;
        if (kind == "--blockdev") {
            if (!spec.empty() && spec[0] == '{') {
                auto j = ParseJson(spec);
                st = j.ok() ? nodes.AddJson(*j) : j.status();
            } else {
                auto o = OptionSet::Parse(spec);
                st = o.ok() ? nodes.Add(std::move(o).value()) : o.status();
            }
        } else {
            st = exports.AddFromString(spec);
        }
        if (!st.ok()) {
            fprintf(stderr, "qzns-storage-daemon: %s %s: %s\n", kind.c_str(), spec.c_str(), st.message().c_str());
            shutdown();
            return 1;
        }
    }
    if (!qmp_addr.empty()) {
        auto q = qmp::QmpServer::Start(qmp_addr);
        if (!q.ok()) {
            fprintf(stderr, "qzns-storage-daemon: --qmp: %s\n", q.status().message().c_str());
            shutdown();
            return 1;
        }
        qmp = std::move(q).value();
        qmp_raw = qmp.get();
        RegisterQmpCommands(qmp->dispatcher(), nodes, exports);
    }
    if (!pidfile.empty()) {
        int fd = open(pidfile.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            fprintf(stderr, "qzns-storage-daemon: cannot write pid file %s: %s\n", pidfile.c_str(), strerror(errno));
            shutdown();
            return 1;
        }
        std::string pid = std::to_string(getpid()) + "\n";
        if (write(fd, pid.data(), pid.size()) < 0) {
        }
        close(fd);
    }
    int sig = 0;
    sigwait(&sigs, &sig);
    if (qmp) {
        Json d = Json::MakeObject();
        d.Set("guest", false).Set("reason", QuitRequested() ? "host-qmp-quit" : "host-signal");
        qmp->Emit("SHUTDOWN", std::move(d));
    }
    return shutdown();
}
