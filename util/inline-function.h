// A callable that never allocates. It stores the callable inline, in a fixed number of bytes,
// and accepts only what can be copied as bytes: lambdas that capture pointers, references and
// integers. Completion paths use it instead of std::function so that no I/O allocates; a
// capture that does not fit, or one that owns something (a shared_ptr, a std::function), is a
// compile error rather than a hidden allocation.
#pragma once

#include <cstddef>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

namespace qzns::util {

template <class Sig, size_t Capacity = 32>
class InlineFunction;

template <class R, class... Args, size_t Capacity>
class InlineFunction<R(Args...), Capacity> {
public:
    InlineFunction() = default;
    InlineFunction(std::nullptr_t) {}

    template <class F, class D = std::decay_t<F>,
              class = std::enable_if_t<!std::is_same_v<D, InlineFunction> && std::is_invocable_r_v<R, D&, Args...>>>
    InlineFunction(F&& f) {  // NOLINT: implicit, like std::function
        static_assert(sizeof(D) <= Capacity,
                      "capture too large for InlineFunction: capture a pointer to the state instead");
        static_assert(alignof(D) <= alignof(std::max_align_t), "over-aligned capture");
        static_assert(std::is_trivially_copyable_v<D> && std::is_trivially_destructible_v<D>,
                      "InlineFunction holds only captures that own nothing (pointers, integers)");
        ::new (static_cast<void*>(storage_)) D(std::forward<F>(f));
        call_ = [](void* s, Args... a) -> R { return (*std::launder(static_cast<D*>(s)))(std::forward<Args>(a)...); };
    }

    explicit operator bool() const { return call_ != nullptr; }
    R operator()(Args... a) const { return call_(storage_, std::forward<Args>(a)...); }

private:
    alignas(std::max_align_t) mutable unsigned char storage_[Capacity] = {};
    R (*call_)(void*, Args...) = nullptr;
};

}  // namespace qzns::util
