// What every File does unless it has an engine: Submit runs the blocking call in the caller, so
// test doubles (memory, fault injection) need nothing to take asynchronous requests.
#include "block/file.h"

namespace qzns {

void File::Submit(FileIo* io) {
    Status st;
    switch (io->op) {
    case FileIo::Op::kRead: st = Pread(io->buf, io->len, io->off); break;
    case FileIo::Op::kWrite: st = Pwrite(io->buf, io->len, io->off); break;
    case FileIo::Op::kSync: st = Sync(); break;
    }
    io->progress = st.ok() ? io->len : io->progress;
    io->done(io, std::move(st));
}

}  // namespace qzns
