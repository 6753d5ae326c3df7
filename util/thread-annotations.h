// Lock annotations for Clang's -Wthread-safety analysis. Clang checks at compile time that
// every GUARDED_BY member is touched only with its mutex held and that REQUIRES functions are
// called with it held; other compilers see plain declarations (the macros expand to nothing,
// so g++ does not warn about unknown attributes).
//
// The mutex types the annotations are meant for are in util/mutex.h.
#pragma once

#if defined(__clang__)
#define QZNS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define QZNS_THREAD_ANNOTATION(x)
#endif

// On a class: its objects are capabilities (locks); the string names the kind in diagnostics.
#define CAPABILITY(x) QZNS_THREAD_ANNOTATION(capability(x))
// On a class: an RAII guard that acquires in its constructor and releases in its destructor.
#define SCOPED_CAPABILITY QZNS_THREAD_ANNOTATION(scoped_lockable)

// On a member: reading needs the capability held (shared at least), writing needs it exclusive.
#define GUARDED_BY(x) QZNS_THREAD_ANNOTATION(guarded_by(x))
// On a pointer member: the same for the pointee; the pointer itself is unguarded.
#define PT_GUARDED_BY(x) QZNS_THREAD_ANNOTATION(pt_guarded_by(x))

// On a function: the caller must hold the capability (exclusively / at least shared).
#define REQUIRES(...) QZNS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) QZNS_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))

// On a function: it acquires / releases the capability (no argument: `this`, or, on a scoped
// guard's member, whatever the guard manages).
#define ACQUIRE(...) QZNS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) QZNS_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) QZNS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) QZNS_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
// First argument: the return value that means "acquired".
#define TRY_ACQUIRE(...) QZNS_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))

// On a function: the caller must not hold the capability (the function takes it itself).
#define EXCLUDES(...) QZNS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))

// On a function: the capability is held after it returns (a runtime check the analysis trusts).
#define ASSERT_CAPABILITY(x) QZNS_THREAD_ANNOTATION(assert_capability(x))

// On a function: it returns a reference to the capability named, for use in other annotations.
#define RETURN_CAPABILITY(x) QZNS_THREAD_ANNOTATION(lock_returned(x))

// On a function: skip the analysis of its body. Say why next to every use.
#define NO_THREAD_SAFETY_ANALYSIS QZNS_THREAD_ANNOTATION(no_thread_safety_analysis)
