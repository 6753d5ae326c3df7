// Shared pieces of the qzns-img subcommands: argument scanning in qemu-img's idiom and opening
// images for a tool.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "block/block-driver.h"
#include "block/qcow2/qcow2.h"
#include "util/status.h"

namespace qzns::img {

// Prints "qzns-img: <message>" to stderr and returns the exit code 1.
int Fail(const Status& st);
int Fail(const std::string& msg);

// A minimal getopt-like scanner: short options with or without a value, long options as
// --name or --name=value; the rest are positional arguments.
class Args {
public:
    Args(int argc, char** argv, int first);
    // Returns the next option name ("f", "output", ...) or "" when there are none left.
    // `with_value` lists the options that take a value.
    Result<std::string> Next(const std::vector<std::string>& with_value);
    const std::string& value() const { return value_; }
    const std::vector<std::string>& positional() const { return positional_; }

private:
    std::vector<std::string> argv_;
    size_t pos_ = 0;
    std::string value_;
    std::vector<std::string> positional_;
};

enum class OutputFormat { kHuman, kJson };
Result<OutputFormat> ParseOutputFormat(const std::string& s);

struct OpenedImage {
    std::unique_ptr<BlockDriver> drv;
    qcow2::Image* qcow2 = nullptr;  // set when the format is qcow2
};
Result<OpenedImage> OpenForTool(const std::string& path, const std::string& format, bool write,
                                bool force_share = false, bool check_mode = false);

int CmdCreate(Args& a);
int CmdInfo(Args& a);
int CmdCheck(Args& a);
int CmdMap(Args& a);
int CmdConvert(Args& a);
int CmdZone(Args& a);
int CmdZoneMap(Args& a);  // zone map (tools/img/zone-map.cc)
int CmdBench(Args& a);

}  // namespace qzns::img
