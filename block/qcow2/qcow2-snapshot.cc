// The internal snapshot table, read for `info` and for `check`'s reference counting. qzns does
// not create or apply snapshots; an image that has them opens read-only (writing would need
// copy-on-write of shared clusters, which would also have to cover the zone tables).
#include <cstring>

#include "block/qcow2/qcow2.h"

namespace qzns::qcow2 {

Status Image::ReadSnapshots() {
    info_.snapshots.clear();
    if (nb_snapshots_ == 0) return Status::Ok();
    QZNS_ASSIGN(uint64_t fsize, file_->Size());
    uint64_t pos = snapshots_offset_;
    for (uint32_t i = 0; i < nb_snapshots_; i++) {
        SnapshotHeader sh;
        if (pos + sizeof(sh) > fsize) return Status::Error(EINVAL, "snapshot table runs past the end of the file");
        QZNS_TRY(file_->Pread(&sh, sizeof(sh), pos));
        uint64_t extra = sh.extra_data_size.get();
        uint64_t id_len = sh.id_str_size.get();
        uint64_t name_len = sh.name_size.get();
        if (extra > 1024) return Status::Error(EINVAL, "snapshot extra data is too large");
        uint64_t total = sizeof(sh) + extra + id_len + name_len;
        if (pos + total > fsize) return Status::Error(EINVAL, "snapshot table runs past the end of the file");
        std::vector<char> rest(extra + id_len + name_len);
        if (!rest.empty()) QZNS_TRY(file_->Pread(rest.data(), rest.size(), pos + sizeof(sh)));
        SnapshotInfo s;
        s.l1_table_offset = sh.l1_table_offset.get();
        s.l1_size = sh.l1_size.get();
        s.vm_state_size = sh.vm_state_size.get();
        if (extra >= 8) s.vm_state_size = load_be64(rest.data());
        s.date_sec = sh.date_sec.get();
        s.vm_clock_nsec = sh.vm_clock_nsec.get();
        s.id.assign(rest.data() + extra, id_len);
        s.name.assign(rest.data() + extra + id_len, name_len);
        if (s.l1_size > kMaxL1Entries || s.l1_table_offset % cluster_size_ ||
            s.l1_table_offset + uint64_t{s.l1_size} * 8 > fsize)
            return Status::Error(EINVAL, "snapshot '" + s.name + "' has an invalid L1 table");
        info_.snapshots.push_back(std::move(s));
        pos += (total + 7) & ~uint64_t{7};
    }
    return Status::Ok();
}

}  // namespace qzns::qcow2
