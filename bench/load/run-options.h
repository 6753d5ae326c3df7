// The command-line options both load generators take about the run itself (the workload, the
// namespace, how long, the seed, the summary file), with one table, one parser and one usage
// text so the two tools accept and document them the same way.
#pragma once

#include <getopt.h>

#include <string>
#include <vector>

#include "bench/load/queue.h"

namespace qzns::load {

struct RunOptions {
    Workload w;
    uint32_t nsid = 1;
    uint32_t zones_per_queue = 0;
    double runtime = 10;
    uint64_t seed = 1;
    std::string json_path;
};

// getopt_long ids of these options start here; a tool's own ids stay below.
inline constexpr int kRunOptionFirst = 1000;

// Appends the getopt_long entries of these options to `table` (not the terminator).
void AddRunOptions(std::vector<option>* table);
// 1: `c` is one of these options and was applied; 0: it is not; -1: its value is bad (said
// on stderr).
int ParseRunOption(int c, const char* arg, RunOptions* o);
// Their usage lines.
extern const char kRunOptionsUsage[];

// Parses argv: these options into *o, the tool's own (`own`, ids below kRunOptionFirst) with
// own_option(id, optarg), which returns -1 to go on or an exit code. Returns -1 once all of
// argv is parsed, else that exit code.
template <typename F>
int ParseCommandLine(int argc, char** argv, std::vector<option> own, RunOptions* o, F&& own_option) {
    AddRunOptions(&own);
    own.push_back({nullptr, 0, nullptr, 0});
    int c;
    while ((c = getopt_long(argc, argv, "", own.data(), nullptr)) != -1) {
        const int r = ParseRunOption(c, optarg, o);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (const int rc = own_option(c, optarg); rc >= 0) return rc;
    }
    return -1;
}

}  // namespace qzns::load
