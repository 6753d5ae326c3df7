// The raw format driver.
#pragma once

#include "block/block-driver.h"

namespace qzns {

Result<std::unique_ptr<BlockDriver>> OpenRaw(std::unique_ptr<File> file, bool write);

}  // namespace qzns
