#include "bench/load/report.h"

#include <unistd.h>

#include <cstdio>
#include <sstream>

#include "bench/load/queue.h"

namespace qzns::load {

namespace {

std::string StatusMap(const std::array<std::atomic<uint64_t>, 0x800>& a) {
    std::string s = "{";
    for (size_t i = 0; i < a.size(); i++) {
        const uint64_t n = a[i].load();
        if (!n) continue;
        char b[48];
        snprintf(b, sizeof(b), "%s\"0x%03zx\": %llu", s.size() > 1 ? ", " : "", i, static_cast<unsigned long long>(n));
        s += b;
    }
    return s + "}";
}

uint64_t Sum(const std::array<std::atomic<uint64_t>, 0x800>& a) {
    uint64_t n = 0;
    for (const auto& v : a) n += v.load();
    return n;
}

uint64_t TotalOps(const Stats& st) {
    uint64_t n = 0;
    for (const auto& v : st.ops) n += v.load();
    return n;
}

}  // namespace

RunReport ReportEverySecond(const Stats& st, double runtime, std::atomic<bool>& stop, const std::atomic<int>& alive) {
    LatencyHistogram::Snapshot prev{}, cur{};
    RunReport r;
    uint64_t prev_ops = 0, prev_bytes = 0;
    const uint64_t start = NowNs();
    uint64_t tick = start;
    for (int sec = 1; alive.load(); sec++) {
        tick += 1000000000ull;
        while (NowNs() < tick && alive.load()) usleep(20000);
        if (runtime >= 0 && NowNs() - start >= static_cast<uint64_t>(runtime * 1e9)) stop = true;
        const uint64_t ops = TotalOps(st);
        const uint64_t bytes = st.bytes_written.load() + st.bytes_read.load();
        st.lat.Read(&cur);
        const double p50 = LatencyHistogram::Percentile(cur, prev, 50) / 1e3,
                     p99 = LatencyHistogram::Percentile(cur, prev, 99) / 1e3;
        printf("t=%d iops=%llu MB/s=%.1f p50_us=%.0f p99_us=%.0f expected_err=%llu unexpected=%llu verify_fail=%llu "
               "drops=%llu reconnects=%llu faults=%llu\n",
               sec, static_cast<unsigned long long>(ops - prev_ops), (bytes - prev_bytes) / 1e6, p50, p99,
               static_cast<unsigned long long>(Sum(st.expected_status)),
               static_cast<unsigned long long>(Sum(st.unexpected_status)),
               static_cast<unsigned long long>(st.verify_failures.load()),
               static_cast<unsigned long long>(st.conn_drops.load()), static_cast<unsigned long long>(st.reconnects.load()),
               static_cast<unsigned long long>(st.faults_learned.load()));
        fflush(stdout);
        char b[128];
        snprintf(b, sizeof(b), "%s{\"t\": %d, \"iops\": %llu, \"p50_us\": %.0f, \"p99_us\": %.0f}",
                 r.per_second.empty() ? "" : ", ", sec, static_cast<unsigned long long>(ops - prev_ops), p50, p99);
        r.per_second += b;
        prev = cur;
        prev_ops = ops;
        prev_bytes = bytes;
    }
    r.elapsed_s = (NowNs() - start) / 1e9;
    return r;
}

std::string SummaryFields(const Stats& st, const RunReport& r) {
    LatencyHistogram::Snapshot zero{}, cur{};
    st.lat.Read(&cur);
    std::ostringstream j;
    j << "\"elapsed_s\": " << r.elapsed_s << ", \"ops\": {";
    for (int k = 0; k < kOpKinds; k++) j << (k ? ", " : "") << "\"" << kOpNames[k] << "\": " << st.ops[k].load();
    j << "}, \"iops\": " << static_cast<uint64_t>(TotalOps(st) / r.elapsed_s)
      << ", \"bytes_written\": " << st.bytes_written.load() << ", \"bytes_read\": " << st.bytes_read.load()
      << ", \"bytes_verified\": " << st.bytes_verified.load() << ", \"verify_failures\": " << st.verify_failures.load()
      << ", \"lost_acknowledged_bytes\": " << st.lost_bytes.load()
      << ", \"append_lba_errors\": " << st.append_lba_errors.load() << ", \"report_checks\": " << st.report_checks.load()
      << ", \"report_mismatches\": " << st.report_mismatches.load() << ", \"faults_learned\": " << st.faults_learned.load()
      << ", \"expected_statuses\": " << StatusMap(st.expected_status)
      << ", \"unexpected_statuses\": " << StatusMap(st.unexpected_status)
      << ", \"conn_drops\": " << st.conn_drops.load() << ", \"reconnects\": " << st.reconnects.load()
      << ", \"connect_failures\": " << st.connect_failures.load() << ", \"aborted\": " << st.aborted.load()
      << ", \"latency_us\": {\"p50\": " << LatencyHistogram::Percentile(cur, zero, 50) / 1e3
      << ", \"p99\": " << LatencyHistogram::Percentile(cur, zero, 99) / 1e3
      << ", \"p999\": " << LatencyHistogram::Percentile(cur, zero, 99.9) / 1e3 << "}"
      << ", \"per_second\": [" << r.per_second << "]";
    return j.str();
}

bool RunPassed(const Stats& st) {
    return TotalOps(st) > 0 && Sum(st.unexpected_status) == 0 && st.verify_failures.load() == 0 &&
           st.report_mismatches.load() == 0 && st.append_lba_errors.load() == 0;
}

}  // namespace qzns::load
