// qzns-img zone map: draws every zone of an image as a cell coloured by its state and filled to
// its write pointer (relative to its capacity), with a legend, as SVG — or PNG through Debian's
// rsvg-convert (librsvg2-bin) or ImageMagick's convert when one of them is installed.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tools/img/img-common.h"
#include "block/zoned/zone-names.h"
#include "util/size.h"

namespace qzns::img {
namespace {

struct StateStyle {
    ZoneState state;
    const char* colour;
    const char* label;
};

// Colour-blind-safe-ish palette; Empty is light so a mostly empty disk reads as empty.
constexpr StateStyle kStyles[] = {
    {ZoneState::kNotWritePointer, "#8c8c8c", "conventional"},
    {ZoneState::kEmpty, "#f2f2f2", "empty"},
    {ZoneState::kImplicitOpen, "#4daf4a", "implicitly opened"},
    {ZoneState::kExplicitOpen, "#1b7837", "explicitly opened"},
    {ZoneState::kClosed, "#ff9f1c", "closed"},
    {ZoneState::kFull, "#377eb8", "full"},
    {ZoneState::kReadOnly, "#984ea3", "read only"},
    {ZoneState::kOffline, "#e41a1c", "offline"},
};

const StateStyle& StyleOf(ZoneState s) {
    for (const auto& st : kStyles)
        if (st.state == s) return st;
    return kStyles[0];
}

std::string XmlEscape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        default: out += c;
        }
    }
    return out;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string FindInPath(const std::string& name) {
    const char* path = getenv("PATH");
    std::string p = path ? path : "/usr/bin:/bin";
    size_t pos = 0;
    while (pos <= p.size()) {
        size_t end = p.find(':', pos);
        if (end == std::string::npos) end = p.size();
        std::string dir = p.substr(pos, end - pos);
        if (!dir.empty()) {
            std::string cand = dir + "/" + name;
            if (access(cand.c_str(), X_OK) == 0) return cand;
        }
        pos = end + 1;
    }
    return "";
}

// Runs argv without a shell; true when it exited 0.
bool RunQuiet(const std::vector<std::string>& args, std::string* out = nullptr) {
    int fds[2];
    if (out && pipe(fds) != 0) return false;
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        if (out) {
            dup2(fds[1], 1);
            close(fds[0]);
            close(fds[1]);
        }
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            if (!out) dup2(devnull, 1);
            dup2(devnull, 2);
        }
        std::vector<char*> av;
        for (const auto& a : args) av.push_back(const_cast<char*>(a.c_str()));
        av.push_back(nullptr);
        execv(av[0], av.data());
        _exit(127);
    }
    if (out) {
        close(fds[1]);
        char buf[4096];
        ssize_t n;
        while ((n = read(fds[0], buf, sizeof buf)) > 0) out->append(buf, static_cast<size_t>(n));
        close(fds[0]);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// A converter from SVG to PNG: rsvg-convert, else a real ImageMagick convert (some systems have
// a stand-in script named convert that is not ImageMagick).
std::vector<std::string> PngConverter(const std::string& svg, const std::string& png) {
    std::string rsvg = FindInPath("rsvg-convert");
    if (!rsvg.empty()) return {rsvg, "-f", "png", "-o", png, svg};
    std::string convert = FindInPath("convert");
    if (!convert.empty()) {
        std::string version;
        if (RunQuiet({convert, "-version"}, &version) && version.find("Version: ImageMagick") != std::string::npos)
            return {convert, svg, png};
    }
    return {};
}

struct ZoneCell {
    ZoneState state;
    bool conv;
    double fill;  // 0..1 of the capacity
};

std::string RenderSvg(const std::string& title, const std::string& subtitle, const std::vector<ZoneCell>& cells) {
    const size_t n = cells.size();
    // About 64 columns for small disks, wider for large ones so the picture stays roughly square.
    size_t cols = std::max<size_t>(16, std::min<size_t>(1024, static_cast<size_t>(std::ceil(std::sqrt(double(n) * 2)))));
    if (n < cols) cols = std::max<size_t>(n, 1);
    size_t rows = (n + cols - 1) / cols;
    double cell = n <= 4096 ? 14 : n <= 65536 ? 6 : 2;
    double gap = cell >= 6 ? 1 : 0;
    double margin = 10, header = 44, legend_h = 24 * ((std::size(kStyles) + 3) / 4) + 10;
    double grid_w = cols * (cell + gap), grid_h = rows * (cell + gap);
    double width = std::max(grid_w + 2 * margin, 640.0), height = header + grid_h + legend_h + 2 * margin;

    std::array<uint64_t, 16> counts{};
    for (const auto& c : cells) counts[static_cast<unsigned>(c.state) & 15]++;

    std::string s;
    s.reserve(n * 120 + 4096);
    char buf[512];
    snprintf(buf, sizeof buf,
             "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
             "font-family=\"sans-serif\">\n",
             width, height, width, height);
    s += buf;
    snprintf(buf, sizeof buf, "<rect width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n", width, height);
    s += buf;
    s += "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">" + XmlEscape(title) + "</text>\n";
    s += "<text x=\"10\" y=\"36\" font-size=\"11\" fill=\"#444444\">" + XmlEscape(subtitle) + "</text>\n";
    s += "<g id=\"zones\">\n";
    for (size_t i = 0; i < n; i++) {
        const ZoneCell& c = cells[i];
        double x = margin + (i % cols) * (cell + gap), y = header + (i / cols) * (cell + gap);
        const StateStyle& st = StyleOf(c.state);
        // One <g class="zone"> per zone: the outline (capacity) and the part filled to the wp.
        snprintf(buf, sizeof buf,
                 "<g class=\"zone\" data-zone=\"%zu\" data-state=\"%s\"><title>zone %zu: %s, %.0f%%</title>"
                 "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" stroke=\"#cccccc\" "
                 "stroke-width=\"%.1f\"/>",
                 i, ZoneStateLabel(c.state), i, st.label, c.fill * 100, x, y, cell, cell,
                 c.state == ZoneState::kEmpty || c.state == ZoneState::kImplicitOpen ||
                         c.state == ZoneState::kExplicitOpen || c.state == ZoneState::kClosed
                     ? "#f2f2f2"
                     : st.colour,
                 gap > 0 ? 0.3 : 0.0);
        s += buf;
        bool partial = c.state == ZoneState::kImplicitOpen || c.state == ZoneState::kExplicitOpen ||
                       c.state == ZoneState::kClosed;
        if (partial && c.fill > 0) {
            snprintf(buf, sizeof buf, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\"/>", x,
                     y, std::max(0.5, cell * c.fill), cell, st.colour);
            s += buf;
        } else if (partial) {
            // Opened or closed with nothing written: an outline in the state's colour.
            snprintf(buf, sizeof buf,
                     "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"%s\" "
                     "stroke-width=\"1\"/>",
                     x + 0.5, y + 0.5, cell - 1, cell - 1, st.colour);
            s += buf;
        }
        s += "</g>\n";
    }
    s += "</g>\n<g id=\"legend\" font-size=\"11\">\n";
    double ly = header + grid_h + margin + 6;
    size_t k = 0;
    for (const auto& st : kStyles) {
        double lx = margin + (k % 4) * 155, y = ly + (k / 4) * 24;
        snprintf(buf, sizeof buf,
                 "<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"12\" fill=\"%s\" stroke=\"#999999\"/>"
                 "<text x=\"%.0f\" y=\"%.0f\">%s (%llu)</text>\n",
                 lx, y, st.colour, lx + 17, y + 10, st.label,
                 static_cast<unsigned long long>(counts[static_cast<unsigned>(st.state) & 15]));
        s += buf;
        k++;
    }
    s += "</g>\n</svg>\n";
    return s;
}

}  // namespace

int CmdZoneMap(Args& a) {
    std::string fmt, out_path;
    while (true) {
        auto n = a.Next({"f", "o", "output"});
        if (!n.ok()) return Fail(n.status());
        if (n->empty()) break;
        if (*n == "f") fmt = a.value();
        else if (*n == "o" || *n == "output") out_path = a.value();
        else if (*n == "U") {
        } else return Fail("zone map: unknown option '" + *n + "'");
    }
    const auto& pos = a.positional();
    if (pos.size() != 1 || out_path.empty())
        return Fail("usage: zone map [-f FMT] -o OUTPUT.svg|OUTPUT.png FILE");
    bool png = EndsWith(out_path, ".png");
    if (!png && !EndsWith(out_path, ".svg")) return Fail("zone map: the output must end in .svg or .png");

    auto oi = OpenForTool(pos[0], fmt, false, /*force_share=*/true);
    if (!oi.ok()) return Fail(oi.status());
    if (!oi->qcow2 || !oi->qcow2->zoned()) return Fail("'" + pos[0] + "' is not a zoned image");
    qcow2::Image& img = *oi->qcow2;
    const auto& g = *img.zoned();
    std::vector<uint64_t> words(g.nr_zones);
    Status st = img.ReadZoneWords(0, g.nr_zones, words.data());
    if (!st.ok()) return Fail(st);
    uint64_t zs = g.zone_size / 512, cap = g.zone_capacity / 512;
    std::vector<ZoneCell> cells(g.nr_zones);
    for (uint32_t z = 0; z < g.nr_zones; z++) {
        ZoneWord w{words[z]};
        bool conv = w.type() == ZoneType::kConventional;
        uint64_t start = uint64_t{z} * zs;
        double fill = conv || cap == 0 ? 1.0 : double(std::min(w.wp() - std::min(w.wp(), start), cap)) / double(cap);
        cells[z] = ZoneCell{w.state(), conv, fill};
    }
    std::string title = "zones of " + pos[0];
    std::string sub = std::to_string(g.nr_zones) + " zones (" + std::to_string(g.nr_conv_zones) +
                      " conventional), zone size " + FormatSize(g.zone_size) + ", capacity " +
                      FormatSize(g.zone_capacity) + ", profile " +
                      (g.profile == qcow2::ZonedProfile::kZbc ? "zbc" : "zns") +
                      "; cells are filled to the write pointer";
    std::string svg = RenderSvg(title, sub, cells);

    std::string svg_path = png ? out_path.substr(0, out_path.size() - 4) + ".svg" : out_path;
    FILE* f = fopen(svg_path.c_str(), "wb");
    if (!f) return Fail("cannot write '" + svg_path + "': " + strerror(errno));
    bool ok = fwrite(svg.data(), 1, svg.size(), f) == svg.size();
    ok = fclose(f) == 0 && ok;
    if (!ok) return Fail("cannot write '" + svg_path + "': " + strerror(errno));
    if (!png) return 0;
    auto conv = PngConverter(svg_path, out_path);
    if (conv.empty()) {
        fprintf(stderr,
                "qzns-img: PNG output needs rsvg-convert (Debian package librsvg2-bin) or ImageMagick's convert "
                "(package imagemagick); neither is installed, so only the SVG was written: %s\n",
                svg_path.c_str());
        return 0;
    }
    if (!RunQuiet(conv)) return Fail("'" + conv[0] + "' failed to convert '" + svg_path + "' to PNG");
    return 0;
}

}  // namespace qzns::img
