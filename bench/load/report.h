// What the load generators print: a line a second while the queues run, then one JSON summary
// whose fields bench/nvmf_load.py and the iotests read. Shared so both transports report the
// same numbers the same way.
#pragma once

#include <atomic>
#include <string>

#include "bench/load/stats.h"

namespace qzns::load {

struct RunReport {
    double elapsed_s = 0;
    std::string per_second;  // JSON objects, comma-separated
};

// Prints a line a second until `alive` drops to 0, and sets `stop` once `runtime` seconds have
// passed (never when runtime < 0: a verify-only run ends by itself).
RunReport ReportEverySecond(const Stats& st, double runtime, std::atomic<bool>& stop, const std::atomic<int>& alive);

// The summary's fields that do not depend on the transport, without the braces: operations,
// IOPS, bytes, verification, statuses, connection counters, latency, the per-second series.
std::string SummaryFields(const Stats& st, const RunReport& r);

// A run fails when it did nothing, met an unexpected status, or read or reported anything the
// model does not allow.
bool RunPassed(const Stats& st);

}  // namespace qzns::load
