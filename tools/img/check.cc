// qzns-img check: qemu-img check's report and exit codes (0 clean, 1 check failed, 2 corruptions,
// 3 leaks only), with zone metadata validated too.
#include "tools/img/img-common.h"
#include "util/json.h"

namespace qzns::img {

int CmdCheck(Args& a) {
    std::string fmt;
    OutputFormat out = OutputFormat::kHuman;
    qcow2::RepairMode mode = qcow2::RepairMode::kNone;
    bool quiet = false, force_share = false;
    while (true) {
        auto n = a.Next({"f", "output", "r"});
        if (!n.ok()) return Fail(n.status());
        if (n->empty()) break;
        if (*n == "f") fmt = a.value();
        else if (*n == "output") {
            auto o = ParseOutputFormat(a.value());
            if (!o.ok()) return Fail(o.status());
            out = *o;
        } else if (*n == "r") {
            if (a.value() == "leaks") mode = qcow2::RepairMode::kLeaks;
            else if (a.value() == "all") mode = qcow2::RepairMode::kAll;
            else return Fail("Unknown option value for -r (expecting 'leaks' or 'all'): " + a.value());
        } else if (*n == "q") quiet = true;
        else if (*n == "U") force_share = true;
        else return Fail("check: unknown option '" + *n + "'");
    }
    if (a.positional().size() != 1) return Fail("Expecting one image file name");
    const std::string& path = a.positional()[0];
    auto oi = OpenForTool(path, fmt, mode != qcow2::RepairMode::kNone, force_share, true);
    if (!oi.ok()) {
        Fail(oi.status());
        return 1;
    }
    if (!oi->qcow2) {
        fprintf(stderr, "qzns-img: This image format does not support checks\n");
        return 63;
    }
    auto r = oi->qcow2->Check(mode);
    if (!r.ok()) {
        Fail(r.status().Prefix("Check failed"));
        return 1;
    }
    // A repair run reports what is left afterwards, as qemu-img does.
    qcow2::CheckResult res = *r;
    if (mode != qcow2::RepairMode::kNone && (res.leaks_fixed || res.corruptions_fixed)) {
        auto again = oi->qcow2->Check(qcow2::RepairMode::kNone);
        if (!again.ok()) return Fail(again.status().Prefix("Check failed after repair"));
        qcow2::CheckResult after = *again;
        after.leaks_fixed = res.leaks_fixed;
        after.corruptions_fixed = res.corruptions_fixed;
        after.messages.insert(after.messages.begin(), res.messages.begin(), res.messages.end());
        res = after;
    }
    Status st = oi->drv->Close();
    if (!st.ok()) return Fail(st);

    if (out == OutputFormat::kJson) {
        Json j = Json::MakeObject();
        j.Set("image-end-offset", res.image_end_offset)
            .Set("total-clusters", res.total_clusters)
            .Set("check-errors", res.check_errors)
            .Set("leaks", res.leaks)
            .Set("corruptions", res.corruptions)
            .Set("allocated-clusters", res.allocated_clusters)
            .Set("filename", path)
            .Set("format", "qcow2")
            .Set("fragmented-clusters", res.fragmented_clusters)
            .Set("compressed-clusters", res.compressed_clusters)
            .Set("zone-errors", res.zone_errors)
            .Set("stale-zone-clusters", res.stale_zone_clusters);
        if (res.leaks_fixed) j.Set("leaks-fixed", res.leaks_fixed);
        if (res.corruptions_fixed) j.Set("corruptions-fixed", res.corruptions_fixed);
        printf("%s\n", j.Dump(4).c_str());
    } else if (!quiet) {
        for (const auto& m : res.messages) fprintf(stderr, "%s\n", m.c_str());
        if (res.leaks_fixed || res.corruptions_fixed)
            printf("The following inconsistencies were found and repaired:\n\n    %llu leaked clusters\n"
                   "    %llu corruptions\n\nDouble checking the fixed image now...\n",
                   static_cast<unsigned long long>(res.leaks_fixed),
                   static_cast<unsigned long long>(res.corruptions_fixed));
        if (!res.corruptions && !res.leaks && !res.check_errors) printf("No errors were found on the image.\n");
        if (res.corruptions)
            printf("\n%llu errors were found on the image.\nData may be corrupted, or further writes to the "
                   "image may corrupt it.\n", static_cast<unsigned long long>(res.corruptions));
        if (res.leaks)
            printf("\n%llu leaked clusters were found on the image.\nThis means waste of disk space, but no "
                   "harm to data.\n", static_cast<unsigned long long>(res.leaks));
        if (res.total_clusters) {
            double t = static_cast<double>(res.total_clusters);
            printf("%llu/%llu = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed clusters\n",
                   static_cast<unsigned long long>(res.allocated_clusters),
                   static_cast<unsigned long long>(res.total_clusters), 100.0 * res.allocated_clusters / t,
                   res.allocated_clusters ? 100.0 * res.fragmented_clusters / res.allocated_clusters : 0.0,
                   res.allocated_clusters ? 100.0 * res.compressed_clusters / res.allocated_clusters : 0.0);
        }
        printf("Image end offset: %llu\n", static_cast<unsigned long long>(res.image_end_offset));
    }
    if (res.check_errors) return 1;
    if (res.corruptions) return 2;
    if (res.leaks) return 3;
    return 0;
}

}  // namespace qzns::img
