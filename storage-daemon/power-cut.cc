#include "storage-daemon/power-cut.h"

#include <chrono>
#include <cstdio>
#include <thread>

namespace qzns::daemon {

Result<Json> PowerCycleNode(BlockNodes& nodes, Exports& exports, const std::string& name, PowerCutMode mode,
                            uint64_t seed, uint64_t atomic_unit) {
    BlockNode* node = nodes.Find(name);
    if (!node) return Status::Error(ENOENT, "Cannot find node '" + name + "'");
    if (node->read_only) return Status::Error(EINVAL, "Node '" + name + "' is read-only: it has nothing to lose");
    std::shared_ptr<BlockBackend> blk = node->backend();
    if (!blk) return Status::Error(EIO, "Node '" + name + "' is powered off (an earlier power-on failed)");

    // The cut comes first, while hosts are still connected: from here on no write reaches the
    // medium, so nothing the exports do while they stop (a flush, say) can save data.
    auto cut = std::chrono::steady_clock::now();
    QZNS_ASSIGN(PowerCutReport rep, blk->PowerCut(mode, seed, atomic_unit));
    std::vector<std::vector<Option>> specs = exports.StopForNode(name);

    // Power on: the dead backend must be gone (its file closed, its image lock released) before
    // the image opens again. Namespaces drop their references as their controllers go.
    std::weak_ptr<BlockBackend> dead = blk;
    node->set_backend(nullptr);
    blk.reset();
    for (int i = 0; !dead.expired(); i++) {
        if (i == 10000) return Status::Error(EBUSY, "power-cut: node '" + name + "' is still in use after 10 s");
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    auto reopened = BlockBackend::Open(node->opts);
    if (!reopened.ok()) return reopened.status().Prefix("power-cut: node '" + name + "' did not power on");
    node->set_backend(std::move(reopened).value());

    Json restarted = Json::MakeArray();
    std::string failed;
    for (auto& spec : specs) {
        std::string id;
        for (const Option& o : spec)
            if (o.key == "id") id = o.value;
        Status st = exports.Add(OptionSet(std::move(spec)));
        if (st.ok())
            restarted.Push(id);
        else
            failed += (failed.empty() ? "" : "; ") + id + ": " + st.message();
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - cut).count();
    auto ull = [](uint64_t v) { return static_cast<unsigned long long>(v); };
    fprintf(stderr, "qzns-storage-daemon: power-cut of node '%s' (%s, seed %llu): %llu cached writes kept, %llu lost "
                    "(%llu / %llu bytes); %llu zones with unflushed writes, %llu kept part (%llu / %llu bytes); "
                    "powered on in %.0f ms\n",
            name.c_str(), PowerCutModeName(mode), ull(seed), ull(rep.ops_kept), ull(rep.ops_lost), ull(rep.bytes_kept),
            ull(rep.bytes_lost), ull(rep.zones_unflushed), ull(rep.zones_partial), ull(rep.zone_bytes_kept),
            ull(rep.zone_bytes_lost), ms);
    if (!failed.empty())
        return Status::Error(EIO, "power-cut: node '" + name + "' powered on, but exports did not restart: " + failed);
    Json j = Json::MakeObject();
    j.Set("node-name", name)
        .Set("mode", PowerCutModeName(mode))
        .Set("seed", seed)
        .Set("writes-kept", rep.ops_kept)
        .Set("writes-lost", rep.ops_lost)
        .Set("bytes-kept", rep.bytes_kept)
        .Set("bytes-lost", rep.bytes_lost)
        .Set("zones-unflushed", rep.zones_unflushed)
        .Set("zones-partial", rep.zones_partial)
        .Set("zone-bytes-kept", rep.zone_bytes_kept)
        .Set("zone-bytes-lost", rep.zone_bytes_lost)
        .Set("exports", std::move(restarted));
    return j;
}

}  // namespace qzns::daemon
