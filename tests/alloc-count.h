// Counts the heap allocations of a whole test program (tests/alloc-count.cc replaces the global
// operator new and delete): set g_allocs = 0 and g_counting = true around the I/O measured, and
// t_exempt on the test's own host threads, whose allocations are not the device's.
#pragma once

#include <atomic>
#include <cstdint>

extern std::atomic<bool> g_counting;
extern std::atomic<uint64_t> g_allocs;
extern thread_local bool t_exempt;
