// In-memory File for tests and fuzzers: a growable byte vector.
#include <algorithm>
#include <cstring>
#include <vector>

#include "block/file.h"
#include "util/mutex.h"

namespace qzns {
namespace {

class MemFile final : public File {
public:
    explicit MemFile(std::string name) : name_(std::move(name)) {}

    // The engine reads and writes data outside its own lock, so concurrent calls are normal.
    Status Pread(void* buf, uint64_t len, uint64_t off) override {
        if (len == 0) return Status::Ok();  // buf may be null (an empty vector's data())
        util::MutexLock lk(mu_);
        auto* out = static_cast<uint8_t*>(buf);
        uint64_t avail = off < data_.size() ? std::min<uint64_t>(len, data_.size() - off) : 0;
        if (avail) std::memcpy(out, data_.data() + off, avail);
        std::memset(out + avail, 0, len - avail);
        return Status::Ok();
    }
    Status Pwrite(const void* buf, uint64_t len, uint64_t off) override {
        if (len == 0) return Status::Ok();
        util::MutexLock lk(mu_);
        if (off + len < off || off + len > (1ull << 40))
            return Status::Error(EFBIG, "write beyond the in-memory file's 1 TiB limit");
        if (off + len > data_.size()) data_.resize(off + len);
        std::memcpy(data_.data() + off, buf, len);
        return Status::Ok();
    }
    Status Sync() override { return Status::Ok(); }
    Result<uint64_t> Size() override {
        util::MutexLock lk(mu_);
        return static_cast<uint64_t>(data_.size());
    }
    Status Truncate(uint64_t size) override {
        util::MutexLock lk(mu_);
        if (size > (1ull << 40)) return Status::Error(EFBIG, "in-memory file larger than 1 TiB");
        data_.resize(size);
        return Status::Ok();
    }
    Status PunchHole(uint64_t off, uint64_t len) override {
        util::MutexLock lk(mu_);
        if (off >= data_.size()) return Status::Ok();
        uint64_t n = std::min<uint64_t>(len, data_.size() - off);
        std::memset(data_.data() + off, 0, n);
        return Status::Ok();
    }
    Result<uint64_t> AllocatedBytes() override {
        util::MutexLock lk(mu_);
        return static_cast<uint64_t>(data_.size());
    }
    const std::string& name() const override { return name_; }

private:
    std::string name_;
    util::Mutex mu_;
    std::vector<uint8_t> data_ GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<File> NewMemFile(std::string name) { return std::make_unique<MemFile>(std::move(name)); }

}  // namespace qzns
