#include "storage-daemon/exports.h"

namespace qzns::daemon {

Status Exports::AddFromString(const std::string& spec) {
    QZNS_ASSIGN(auto opts, ParseOptionString([&] {
        // allow-host may be given several times; number the repeats so keys stay unique.
        std::string out;
        int n = 0;
        size_t pos = 0;
        while (pos <= spec.size()) {
            size_t end = pos;
            while (end < spec.size()) {
                if (spec[end] == ',' && end + 1 < spec.size() && spec[end + 1] == ',') {
                    end += 2;
                    continue;
                }
                if (spec[end] == ',') break;
                end++;
            }
            std::string item = spec.substr(pos, end - pos);
            if (item.rfind("allow-host=", 0) == 0) item = "allow-host." + std::to_string(n++) + item.substr(10);
            if (!item.empty()) out += (out.empty() ? "" : ",") + item;
            pos = end + 1;
        }
        return out;
    }()));
    return Add(OptionSet(std::move(opts)));
}

Status Exports::AddJson(const Json& args) {
    if (!args.is_object()) return Status::Error(EINVAL, "block-export-add: arguments must be an object");
    std::vector<Option> flat;
    int hosts = 0;
    for (const auto& [k, v] : args.as_object()) {
        if (k == "allow-host" && v.is_array()) {
            for (const auto& h : v.as_array()) flat.push_back({"allow-host." + std::to_string(hosts++), h.as_string(), false});
        } else if (v.is_string()) {
            flat.push_back({k, v.as_string(), false});
        } else if (v.is_bool()) {
            flat.push_back({k, v.as_bool() ? "on" : "off", false});
        } else if (v.is_integer()) {
            flat.push_back({k, std::to_string(v.as_uint64().value_or(0)), false});
        } else if (k == "addr" && v.is_object()) {
            // QEMU-style {"type": "inet", "host": ..., "port": ...} or {"type": "unix", "path": ...}
            if (const Json* h = v.get("host")) flat.push_back({"addr", h->as_string(), false});
            if (const Json* p = v.get("port")) flat.push_back({"port", p->is_string() ? p->as_string() : std::to_string(p->as_uint64().value_or(0)), false});
            if (const Json* p = v.get("path")) flat.push_back({"socket", p->as_string(), false});
        } else {
            return Status::Error(EINVAL, "block-export-add: unsupported value for '" + k + "'");
        }
    }
    return Add(OptionSet(std::move(flat)));
}

Status Exports::Add(OptionSet o) {
    auto type = o.Take("type");
    if (!type) return Status::Error(EINVAL, "--export: type is required (nvme-tcp or vfio-user)");
    auto it = factories_.find(*type);
    if (it == factories_.end()) {
        std::string known;
        for (const auto& [k, f] : factories_) known += (known.empty() ? "" : ", ") + k;
        return Status::Error(EINVAL, "--export: unknown type '" + *type + "' (known: " + known + ")");
    }
    if (!o.Has("id")) return Status::Error(EINVAL, "--export: id is required");
    std::vector<Option> spec;  // what recreates the export after a power cycle
    {
        util::MutexLock lk(mu_);
        auto id = o.Take("id");
        for (auto& e : exports_)
            if (e->id() == *id) return Status::Error(EEXIST, "an export with id '" + *id + "' already exists");
        spec = {{"type", *type, false}, {"id", *id, false}};
        for (const auto& k : o.Untaken()) spec.push_back({k, o.Take(k).value_or(""), false});
    }
    QZNS_ASSIGN(auto exp, it->second(OptionSet(std::vector<Option>(spec.begin() + 1, spec.end())), ctx_));
    util::MutexLock lk(mu_);
    specs_[exp.get()] = std::move(spec);
    exports_.push_back(std::move(exp));
    return Status::Ok();
}

std::vector<std::vector<Option>> Exports::StopForNode(const std::string& node_name) {
    std::vector<std::unique_ptr<Export>> mine;
    std::vector<std::vector<Option>> specs;
    {
        util::MutexLock lk(mu_);
        for (auto it = exports_.begin(); it != exports_.end();) {
            if ((*it)->node_name() != node_name) {
                ++it;
                continue;
            }
            specs.push_back(std::move(specs_[it->get()]));
            specs_.erase(it->get());
            mine.push_back(std::move(*it));
            it = exports_.erase(it);
        }
    }
    // Their node lost power: the flush a stopping export makes fails, and that is the point.
    for (auto& e : mine) (void)e->Stop();
    return specs;
}

Status Exports::Remove(const std::string& id) {
    std::unique_ptr<Export> e;
    {
        util::MutexLock lk(mu_);
        for (auto it = exports_.begin(); it != exports_.end(); ++it) {
            if ((*it)->id() == id) {
                e = std::move(*it);
                specs_.erase(e.get());
                exports_.erase(it);
                break;
            }
        }
    }
    if (!e) return Status::Error(ENOENT, "Export '" + id + "' is not found");
    return e->Stop();
}

Json Exports::Query() const {
    util::MutexLock lk(mu_);
    Json arr = Json::MakeArray();
    for (const auto& e : exports_) arr.Push(e->Describe());
    return arr;
}

Export* Exports::Find(const std::string& id) {
    util::MutexLock lk(mu_);
    for (auto& e : exports_)
        if (e->id() == id) return e.get();
    return nullptr;
}

std::vector<Export*> Exports::All() {
    util::MutexLock lk(mu_);
    std::vector<Export*> v;
    for (auto& e : exports_) v.push_back(e.get());
    return v;
}

Status Exports::StopAll() {
    std::vector<std::unique_ptr<Export>> all;
    {
        util::MutexLock lk(mu_);
        all.swap(exports_);
        specs_.clear();
    }
    Status first;
    for (auto& e : all) {
        Status st = e->Stop();
        if (!st.ok() && first.ok()) first = st;
    }
    return first;
}

}  // namespace qzns::daemon
