#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "block/file-fault.h"

namespace qzns {
namespace {

std::string ReadAll(File& f) {
    auto size = f.Size();
    EXPECT_TRUE(size.ok()) << size.status().message();
    std::string out(size.ok() ? *size : 0, '\0');
    EXPECT_TRUE(f.Pread(out.data(), out.size(), 0).ok());
    return out;
}

void Write(File& f, uint64_t off, const std::string& s) {
    Status st = f.Pwrite(s.data(), s.size(), off);
    ASSERT_TRUE(st.ok()) << st.message();
}

std::string Durable(FaultFile& ff) {
    auto copy = ff.CloneDurable();
    EXPECT_TRUE(copy.ok()) << copy.status().message();
    return copy.ok() ? ReadAll(**copy) : std::string();
}

TEST(FaultFile, ReadsSeeUnsyncedWritesInOrder) {
    auto ff = NewFaultFile(NewMemFile());
    Write(*ff, 0, "aaaaaaaa");
    Write(*ff, 2, "bb");
    ASSERT_TRUE(ff->PunchHole(5, 2).ok());
    EXPECT_EQ(ReadAll(*ff), std::string("aabba\0\0a", 8));
    ASSERT_TRUE(ff->Truncate(4).ok());
    ASSERT_TRUE(ff->Truncate(6).ok());
    EXPECT_EQ(ReadAll(*ff), std::string("aabb\0\0", 6));  // truncated bytes stay gone
    EXPECT_EQ(Durable(*ff), "");
    EXPECT_EQ(ff->stats().unsynced_ops, 5u);
}

TEST(FaultFile, SyncMakesWritesDurable) {
    auto ff = NewFaultFile(NewMemFile());
    Write(*ff, 0, "hello");
    ASSERT_TRUE(ff->Sync().ok());
    Write(*ff, 0, "J");
    EXPECT_EQ(ReadAll(*ff), "Jello");
    EXPECT_EQ(Durable(*ff), "hello");
    EXPECT_EQ(ff->stats().unsynced_ops, 1u);
}

TEST(FaultFile, CrashDropsUnsyncedWrites) {
    auto ff = NewFaultFile(NewMemFile());
    Write(*ff, 0, "durable!");
    ASSERT_TRUE(ff->Sync().ok());
    Write(*ff, 0, "lost");
    Write(*ff, 8, "also lost");
    ASSERT_TRUE(ff->Truncate(2).ok());
    ASSERT_TRUE(ff->SimulateCrash(CrashMode::kDropUnsynced, 1).ok());
    EXPECT_TRUE(ff->powered_off());
    char c;
    EXPECT_EQ(ff->Pread(&c, 1, 0).err(), EIO);  // the old engine instance can't touch it
    EXPECT_EQ(Durable(*ff), "durable!");
    ff->PowerOn();
    EXPECT_EQ(ReadAll(*ff), "durable!");
}

TEST(FaultFile, RandomSubsetKeepsWholeWrites) {
    bool saw_mixed = false;
    for (uint64_t seed = 0; seed < 32; seed++) {
        auto ff = NewFaultFile(NewMemFile());
        Write(*ff, 0, std::string(4096, '.'));
        ASSERT_TRUE(ff->Sync().ok());
        for (int i = 0; i < 8; i++) Write(*ff, i * 512, std::string(512, static_cast<char>('A' + i)));
        ASSERT_TRUE(ff->SimulateCrash(CrashMode::kKeepRandomSubset, seed).ok());
        std::string d = Durable(*ff);
        ASSERT_EQ(d.size(), 4096u);
        int kept = 0;
        for (int i = 0; i < 8; i++) {
            std::string sector = d.substr(i * 512, 512);
            bool old = sector == std::string(512, '.');
            bool now = sector == std::string(512, static_cast<char>('A' + i));
            ASSERT_TRUE(old || now) << "seed " << seed << " sector " << i;
            kept += now;
        }
        saw_mixed |= kept > 0 && kept < 8;
    }
    EXPECT_TRUE(saw_mixed);
}

TEST(FaultFile, TornWriteKeepsWholeSectorsOnly) {
    bool saw_torn = false;
    for (uint64_t seed = 0; seed < 32; seed++) {
        auto ff = NewFaultFile(NewMemFile());
        Write(*ff, 0, std::string(8192, 'o'));
        ASSERT_TRUE(ff->Sync().ok());
        // Unaligned: starts mid-sector 0, ends mid-sector 15.
        Write(*ff, 100, std::string(7800, 'n'));
        ASSERT_TRUE(ff->SimulateCrash(CrashMode::kTearSectors, seed).ok());
        std::string d = Durable(*ff);
        ASSERT_EQ(d.size(), 8192u);
        int new_sectors = 0;
        for (int s = 0; s < 16; s++) {
            uint64_t lo = std::max<uint64_t>(s * 512, 100);
            uint64_t hi = std::min<uint64_t>((s + 1) * 512, 7900);
            std::string piece = d.substr(lo, hi - lo);
            bool old = piece == std::string(hi - lo, 'o');
            bool now = piece == std::string(hi - lo, 'n');
            ASSERT_TRUE(old || now) << "seed " << seed << ": sector " << s << " torn inside";
            new_sectors += now;
        }
        EXPECT_EQ(d.substr(0, 100), std::string(100, 'o'));
        EXPECT_EQ(d.substr(7900), std::string(292, 'o'));
        saw_torn |= new_sectors > 0 && new_sectors < 16;
    }
    EXPECT_TRUE(saw_torn);
}

TEST(FaultFile, SameSeedSameCrash) {
    std::string results[2];
    for (auto& r : results) {
        auto ff = NewFaultFile(NewMemFile());
        for (int i = 0; i < 16; i++) Write(*ff, i * 700, std::string(700, static_cast<char>('a' + i)));
        ASSERT_TRUE(ff->SimulateCrash(CrashMode::kTearSectors, 42).ok());
        r = Durable(*ff);
    }
    EXPECT_EQ(results[0], results[1]);
}

TEST(FaultFile, CrashPointCutsPowerAfterNMutatingOps) {
    auto ff = NewFaultFile(NewMemFile());
    ff->SetCrashPoint(3);
    Write(*ff, 0, "a");
    ASSERT_TRUE(ff->Sync().ok());
    Write(*ff, 1, "b");
    char c;
    EXPECT_TRUE(ff->Pread(&c, 1, 0).ok());  // reads do not count
    Status st = ff->Pwrite("c", 1, 2);
    EXPECT_EQ(st.err(), EIO);
    EXPECT_NE(st.message().find("simulated power cut"), std::string::npos);
    EXPECT_TRUE(ff->powered_off());
    EXPECT_EQ(ff->Pread(&c, 1, 0).err(), EIO);  // everything fails after the cut
    EXPECT_EQ(ff->Sync().err(), EIO);
    ASSERT_TRUE(ff->SimulateCrash(CrashMode::kDropUnsynced, 0).ok());
    EXPECT_EQ(Durable(*ff), "a");
    ff->PowerOn();
    EXPECT_EQ(ReadAll(*ff), "a");
    Write(*ff, 1, "z");  // the crash point is gone after PowerOn
    ASSERT_TRUE(ff->Sync().ok());
    EXPECT_EQ(Durable(*ff), "az");
}

TEST(FaultFile, FailAfterFailsFromTheNextMatchingOp) {
    auto ff = NewFaultFile(NewMemFile());
    ff->FailAfter(2, ENOSPC, OpKind::kWrite);
    Write(*ff, 0, "1");
    ASSERT_TRUE(ff->Sync().ok());  // other kinds are not counted
    Write(*ff, 1, "2");
    EXPECT_EQ(ff->Pwrite("3", 1, 2).err(), ENOSPC);
    EXPECT_EQ(ff->Pwrite("4", 1, 3).err(), ENOSPC);
    EXPECT_EQ(ReadAll(*ff), "12");  // failed writes have no effect
    EXPECT_EQ(ff->stats().failed, 2u);
    ff->ClearFaults();
    Write(*ff, 2, "3");
}

TEST(FaultFile, FailOnceFailsExactlyOneOp) {
    auto ff = NewFaultFile(NewMemFile());
    ff->FailAfter(0, EIO, OpKind::kSync | OpKind::kRead, /*once=*/true);
    EXPECT_EQ(ff->Sync().err(), EIO);
    EXPECT_TRUE(ff->Sync().ok());
    char c;
    EXPECT_TRUE(ff->Pread(&c, 1, 0).ok());
}

TEST(FaultFile, FailWritesInRange) {
    auto ff = NewFaultFile(NewMemFile());
    ff->FailWritesInRange(0x1000, 0x1000);
    Write(*ff, 0, std::string(0x1000, 'x'));  // ends right at the range: allowed
    EXPECT_EQ(ff->Pwrite("y", 1, 0x1fff).err(), EIO);
    EXPECT_EQ(ff->PunchHole(0xf00, 0x200).err(), EIO);
    Write(*ff, 0x2000, "z");
    char c;
    EXPECT_TRUE(ff->Pread(&c, 1, 0x1000).ok());
}

TEST(FaultFile, HookCanFailTheSecondWriteAtAnOffset) {
    auto ff = NewFaultFile(NewMemFile());
    int seen = 0;
    ff->SetHook([&](OpKind kind, uint64_t off, uint64_t) {
        if (kind == OpKind::kWrite && off == 0x30000 && ++seen == 2)
            return Status::Error(EIO, "second L2 update fails");
        return Status::Ok();
    });
    Write(*ff, 0x30000, "a");
    Status st = ff->Pwrite("b", 1, 0x30000);
    EXPECT_EQ(st.message(), "second L2 update fails");
    Write(*ff, 0x30000, "c");
}

TEST(FaultFile, RandomFailuresAreSeeded) {
    auto run = [](uint64_t seed) {
        auto ff = NewFaultFile(NewMemFile());
        ff->FailRandomly(4, seed, EIO, OpKind::kWrite);
        std::string pattern;
        for (int i = 0; i < 64; i++) pattern += ff->Pwrite("x", 1, i).ok() ? '.' : 'F';
        return pattern;
    };
    std::string a = run(7);
    EXPECT_EQ(a, run(7));
    EXPECT_NE(a.find('F'), std::string::npos);
    EXPECT_NE(a.find('.'), std::string::npos);
}

TEST(FaultFile, BorrowedFileForwards) {
    auto ff = NewFaultFile(NewMemFile("disk"));
    {
        auto borrowed = BorrowFile(ff.get());
        Write(*borrowed, 0, "abc");
        EXPECT_EQ(borrowed->name(), "disk");
    }
    EXPECT_EQ(ReadAll(*ff), "abc");  // ff survives the borrower
}

TEST(FaultFile, ConcurrentWritersAreSerialised) {
    auto ff = NewFaultFile(NewMemFile());
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 200; i++) {
                std::string s(64, static_cast<char>('a' + t));
                (void)ff->Pwrite(s.data(), s.size(), (t * 200 + i) * 64);
                if (i % 50 == 0) (void)ff->Sync();
            }
        });
    for (auto& th : threads) th.join();
    ASSERT_TRUE(ff->Sync().ok());
    std::string d = Durable(*ff);
    ASSERT_EQ(d.size(), 4u * 200 * 64);
    for (int t = 0; t < 4; t++)
        EXPECT_EQ(d.substr(t * 200 * 64, 200 * 64), std::string(200 * 64, static_cast<char>('a' + t)));
}

}  // namespace
}  // namespace qzns
