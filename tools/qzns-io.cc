// qzns-io: run qemu-io style commands against a (zoned) image: `qzns-io -c 'write -P 0x5a 0 64k' img`.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "block/block-backend.h"
#include "tools/io/io-commands.h"
#include "util/size.h"

namespace {

void Usage(FILE* out) {
    fprintf(out,
            "usage: qzns-io [-f FMT] [-r] [-U] [-C|--volatile-cache SIZE] [-c COMMAND]... FILE\n"
            "Commands: read [-P pat] [-v] [-q] off len | write [-P pat] [-z [-u]] [-q] off len |\n"
            "          discard off len | flush | length |\n"
            "          zrp off nr | zo/zc/zf/zrs/zoff off len | zap [-P pat] [-f] off len |\n"
            "          zde off FILE|-P pat | power_cut [-m lose-unflushed|random] [-s seed] [-a unit]\n"
            "Without -c, commands are read from standard input, one per line.\n");
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> cmds;
    qzns::BlockBackendOptions opts;
    int i = 1;
    for (; i < argc; i++) {
        std::string a = argv[i];
        if (a == "-c" && i + 1 < argc) cmds.push_back(argv[++i]);
        else if (a == "-f" && i + 1 < argc) opts.format = argv[++i];
        else if (a == "-r" || a == "--read-only") opts.read_only = true;
        else if (a == "-U" || a == "--force-share") opts.lock = false;
        else if ((a == "-C" || a == "--volatile-cache") && i + 1 < argc) {
            auto n = qzns::ParseSize(argv[++i]);
            if (!n.ok() || *n < 64 * 1024) {
                fprintf(stderr, "qzns-io: --volatile-cache needs a size of at least 64K, not '%s'\n", argv[i]);
                return 1;
            }
            opts.volatile_cache = *n;
        }
        else if (a == "-h" || a == "--help") {
            Usage(stdout);
            return 0;
        } else if (a.size() > 1 && a[0] == '-') {
            fprintf(stderr, "qzns-io: invalid option '%s'\n", a.c_str());
            Usage(stderr);
            return 1;
        } else break;
    }
    if (i != argc - 1) {
        Usage(stderr);
        return 1;
    }
    std::string path = argv[i];
    opts.filename = path;
    if (!opts.lock && !opts.read_only) {
        // As in QEMU: sharing an image with a writer is only safe when we do not write.
        fprintf(stderr, "qzns-io: force-share=on (-U) can only be used with read-only images (-r)\n");
        return 1;
    }
    auto drv = qzns::BlockBackend::Open(opts);
    if (!drv.ok()) {
        fprintf(stderr, "qzns-io: can't open device %s: %s\n", path.c_str(), drv.status().message().c_str());
        return 1;
    }
    qzns::io::IoContext ctx;
    ctx.blk = drv->get();
    ctx.path = path;
    bool ok = true;
    if (cmds.empty()) {
        std::string line;
        while (std::getline(std::cin, line)) {
            if (line == "quit" || line == "q") break;
            ok = qzns::io::RunCommand(ctx, line) && ok;
            fflush(stdout);
            if (ctx.powered_off) break;
        }
    } else {
        for (const auto& c : cmds) {
            ok = qzns::io::RunCommand(ctx, c) && ok;
            fflush(stdout);
            if (ctx.powered_off) break;
        }
    }
    if (ctx.powered_off) {
        // The image stays as the cut left it (in use, unflushed writes gone); the next open
        // recovers it.
        drv->reset();
        return ok ? 0 : 1;
    }
    qzns::Status st = (*drv)->Close();
    if (!st.ok()) {
        fprintf(stderr, "qzns-io: closing %s: %s\n", path.c_str(), st.message().c_str());
        return 1;
    }
    return ok ? 0 : 1;
}
