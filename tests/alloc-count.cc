// The counting allocator of the no-allocation-per-I/O tests: every operator new of the
// process goes through Counted, which counts it while g_counting is set (and the calling thread
// is not exempt) and prints the backtraces of the first few, so a failure names the code that
// allocated. Linked into a test executable, it replaces the global operators of that program.
#include "tests/alloc-count.h"

#include <execinfo.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <new>

std::atomic<bool> g_counting{false};
std::atomic<uint64_t> g_allocs{0};
thread_local bool t_exempt = false;

namespace {

void* Counted(size_t n, size_t align) {
    if (g_counting.load() && !t_exempt) {
        uint64_t k = g_allocs.fetch_add(1);
        if (k < 4) {
            // backtrace() was warmed up before counting began, so it does not allocate here.
            void* frames[24];
            int depth = backtrace(frames, 24);
            static const char kHead[] = "--- heap allocation during steady-state I/O:\n";
            (void)!write(2, kHead, sizeof(kHead) - 1);
            backtrace_symbols_fd(frames, depth, 2);
        }
    }
    void* p = nullptr;
    if (align <= alignof(std::max_align_t)) {
        p = std::malloc(n ? n : 1);
    } else if (posix_memalign(&p, align, n ? n : 1) != 0) {
        p = nullptr;
    }
    return p;
}

}  // namespace

void* operator new(size_t n) {
    if (void* p = Counted(n, 0)) return p;
    throw std::bad_alloc();
}
void* operator new[](size_t n) {
    if (void* p = Counted(n, 0)) return p;
    throw std::bad_alloc();
}
void* operator new(size_t n, std::align_val_t a) {
    if (void* p = Counted(n, static_cast<size_t>(a))) return p;
    throw std::bad_alloc();
}
void* operator new[](size_t n, std::align_val_t a) {
    if (void* p = Counted(n, static_cast<size_t>(a))) return p;
    throw std::bad_alloc();
}
void* operator new(size_t n, const std::nothrow_t&) noexcept { return Counted(n, 0); }
void* operator new[](size_t n, const std::nothrow_t&) noexcept { return Counted(n, 0); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }
