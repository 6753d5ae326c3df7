// qzns-io's command language, in qemu-io's syntax: each command is a line such as
// `write -P 0x5a 1M 3M`; a command table maps names to handlers.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "block/block-backend.h"

namespace qzns::io {

struct IoContext {
    BlockBackend* blk = nullptr;
    std::string path;
    bool powered_off = false;  // power_cut ran: the session ends and the image is left unclean
};

// Runs one command line; prints results like qemu-io; returns false if the command failed.
bool RunCommand(IoContext& ctx, const std::string& line);

// Splits a command line into words (quotes group words, as a shell would for simple cases).
std::vector<std::string> SplitCommandLine(const std::string& line);

}  // namespace qzns::io
