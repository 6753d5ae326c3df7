// qzns-img: create, inspect, check, map and convert (zoned) qcow2 images, in qemu-img's idiom.
#include <cstdio>
#include <cstring>

#include "tools/img/img-common.h"

namespace {

void Usage(FILE* out) {
    fprintf(out,
            "usage: qzns-img COMMAND [options]\n"
            "\n"
            "Commands:\n"
            "  create [-f qcow2|raw] [-o OPTIONS] [-b BACKING [-F FMT]] [-q] FILE [SIZE]\n"
            "  info [-f FMT] [-U] [--output=human|json] FILE\n"
            "  check [-f FMT] [-r leaks|all] [--output=human|json] [-q] FILE\n"
            "  map [-f FMT] [--output=human|json] FILE\n"
            "  convert [-p] [-f FMT] [-O FMT] [-o OPTIONS] SRC DST\n"
            "  zone report [--output=human|json] FILE\n"
            "  zone map -o OUTPUT.svg|OUTPUT.png FILE\n"
            "  bench [-w] [-d depth] [-s size] [-c count] [-t none|writeback] [-o offset] [-S step]\n"
            "        [--pattern=seq|rand] [--zoned=seq|append] [--flush-interval=N] [-f FMT] FILE\n"
            "\n"
            "Zoned create options (-o): size, cluster_size, refcount_bits, preallocation,\n"
            "  zoned_profile=zns|zbc, zone_size, zone_capacity, zone_nr_conv, max_open_zones,\n"
            "  max_active_zones, max_append_sectors, zd_extension_size\n"
            "  (also zone.size, zone.capacity, zone.conventional_zones, zone.max_append_bytes,\n"
            "   zone.max_open_zones, zone.max_active_zones, zone.mode=host-managed)\n"
            "Use '-o help' with create for the list with explanations.\n");
}

}  // namespace

int main(int argc, char** argv) {
    using namespace qzns::img;
    if (argc < 2) {
        Usage(stderr);
        return 1;
    }
    std::string cmd = argv[1];
    Args args(argc, argv, 2);
    if (cmd == "create") return CmdCreate(args);
    if (cmd == "info") return CmdInfo(args);
    if (cmd == "check") return CmdCheck(args);
    if (cmd == "map") return CmdMap(args);
    if (cmd == "convert") return CmdConvert(args);
    if (cmd == "zone" && argc > 2 && std::strcmp(argv[2], "map") == 0) {
        Args map_args(argc, argv, 3);
        return CmdZoneMap(map_args);
    }
    if (cmd == "zone") return CmdZone(args);
    if (cmd == "bench") return CmdBench(args);
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
        Usage(stdout);
        return 0;
    }
    fprintf(stderr, "qzns-img: Command not found: %s\n", cmd.c_str());
    Usage(stderr);
    return 1;
}
