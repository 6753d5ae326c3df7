#include "tools/img/img-common.h"

namespace qzns::img {

int Fail(const Status& st) { return Fail(st.message()); }
int Fail(const std::string& msg) {
    fprintf(stderr, "qzns-img: %s\n", msg.c_str());
    return 1;
}

Args::Args(int argc, char** argv, int first) {
    for (int i = first; i < argc; i++) argv_.emplace_back(argv[i]);
}

Result<std::string> Args::Next(const std::vector<std::string>& with_value) {
    auto takes_value = [&](const std::string& n) {
        for (const auto& w : with_value)
            if (w == n) return true;
        return false;
    };
    while (pos_ < argv_.size()) {
        std::string a = argv_[pos_++];
        if (a == "--") {
            while (pos_ < argv_.size()) positional_.push_back(argv_[pos_++]);
            break;
        }
        if (a.size() < 2 || a[0] != '-') {
            positional_.push_back(a);
            continue;
        }
        std::string name;
        value_.clear();
        if (a[1] == '-') {
            name = a.substr(2);
            auto eq = name.find('=');
            if (eq != std::string::npos) {
                value_ = name.substr(eq + 1);
                name = name.substr(0, eq);
                if (!takes_value(name)) return Status::Error(EINVAL, "option '--" + name + "' takes no argument");
                return name;
            }
        } else {
            name = a.substr(1, 1);
            if (a.size() > 2) {
                if (!takes_value(name)) return Status::Error(EINVAL, "invalid option -- '" + a.substr(1) + "'");
                value_ = a.substr(2);
                return name;
            }
        }
        if (takes_value(name)) {
            if (pos_ >= argv_.size()) return Status::Error(EINVAL, "option '" + a + "' requires an argument");
            value_ = argv_[pos_++];
        }
        return name;
    }
    return std::string();
}

Result<OutputFormat> ParseOutputFormat(const std::string& s) {
    if (s == "human") return OutputFormat::kHuman;
    if (s == "json") return OutputFormat::kJson;
    return Status::Error(EINVAL, "--output must be used with human or json as argument.");
}

Result<OpenedImage> OpenForTool(const std::string& path, const std::string& format, bool write,
                                bool force_share, bool check_mode) {
    OpenOptions o;
    o.write = write;
    o.format = format;
    o.lock = !force_share;
    o.check_mode = check_mode;
    auto drv = OpenImage(path, o);
    if (!drv.ok()) {
        if (drv.status().message().rfind("Could not open", 0) == 0) return drv.status();
        return drv.status().Prefix("Could not open '" + path + "'");
    }
    OpenedImage oi;
    oi.drv = std::move(drv).value();
    oi.qcow2 = dynamic_cast<qcow2::Image*>(oi.drv.get());
    return oi;
}

}  // namespace qzns::img
