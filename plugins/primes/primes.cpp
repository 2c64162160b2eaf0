// "primes": an example Ferry plugin with two typed functions.
//
//   ferry call primes.is_prime '[112272535095293]'   -> true
//   ferry call primes.factorize '[360]'              -> [2,2,2,3,3,5]
//
// How to make your own plugin from this one:
//   1. Copy plugins/primes/ (this file and CMakeLists.txt) anywhere.
//   2. Rename the plugin in FERRY_PLUGIN below and the target in CMakeLists.txt.
//   3. Replace the functions. A typed function takes its arguments from the
//      request's JSON array and returns anything nlohmann::json can serialize;
//      take `ferry::Context&` first to see the deadline, cancellation or log.
//      Functions run on several threads at once: keep shared state guarded.
//   4. Report errors by throwing: ferry::Error(code, msg) answers with that
//      code, any other exception answers plugin_error.
//   5. Build against an installed Ferry (see CMakeLists.txt) and list the .so
//      in server.toml.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include <ferry/plugin.hpp>

namespace {

using u64 = std::uint64_t;
using u128 = unsigned __int128;

u64 mul_mod(u64 a, u64 b, u64 m) { return static_cast<u64>(static_cast<u128>(a) * b % m); }

u64 pow_mod(u64 base, u64 exp, u64 m) {
  u64 result = 1;
  for (base %= m; exp != 0; exp >>= 1) {
    if (exp & 1) result = mul_mod(result, base, m);
    base = mul_mod(base, base, m);
  }
  return result;
}

constexpr u64 kSmallPrimes[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37};

// Whether `a` proves odd n composite, with n - 1 = d * 2^s.
bool witness(u64 a, u64 d, int s, u64 n) {
  u64 x = pow_mod(a, d, n);
  if (x == 1 || x == n - 1) return false;
  for (int r = 1; r < s; ++r) {
    x = mul_mod(x, x, n);
    if (x == n - 1) return false;
  }
  return true;
}

// Miller-Rabin with the first 12 primes as bases: exact for every n < 3.3e24,
// so for all 64-bit numbers.
bool is_prime_u64(u64 n) {
  if (n < 2) return false;
  for (u64 p : kSmallPrimes) {
    if (n % p == 0) return n == p;
  }
  u64 d = n - 1;
  int s = 0;
  for (; (d & 1) == 0; ++s) d >>= 1;
  return std::none_of(std::begin(kSmallPrimes), std::end(kSmallPrimes),
                      [&](u64 a) { return witness(a, d, s, n); });
}

u64 abs_diff(u64 a, u64 b) { return a > b ? a - b : b - a; }

// One Pollard-Brent run with x -> x^2 + c; returns a factor of n, maybe n itself.
u64 brent(u64 n, u64 c) {
  auto f = [&](u64 x) { return (mul_mod(x, x, n) + c) % n; };
  constexpr u64 kBatch = 128;  // gcd once per batch of products
  u64 x = 2, y = 2, saved = 2, q = 1, g = 1;
  for (u64 r = 1; g == 1; r <<= 1) {
    x = y;
    for (u64 i = 0; i < r; ++i) y = f(y);
    for (u64 k = 0; k < r && g == 1; k += kBatch) {
      saved = y;
      for (u64 i = 0; i < std::min(kBatch, r - k); ++i) {
        y = f(y);
        q = mul_mod(q, abs_diff(x, y), n);
      }
      g = std::gcd(q, n);
    }
  }
  if (g == n) {  // the batch overshot: redo it one step at a time
    do {
      saved = f(saved);
      g = std::gcd(abs_diff(x, saved), n);
    } while (g == 1);
  }
  return g;
}

// A non-trivial factor of an odd composite n.
u64 find_factor(u64 n) {
  for (u64 c = 1;; ++c) {
    const u64 g = brent(n, c);
    if (g != n) return g;
  }
}

// Appends the prime factors of n (which has no factor below 1000).
void factor_into(u64 n, std::vector<u64>& out) {
  if (n == 1) return;
  if (is_prime_u64(n)) {
    out.push_back(n);
    return;
  }
  const u64 d = find_factor(n);
  factor_into(d, out);
  factor_into(n / d, out);
}

bool is_prime(std::int64_t n) { return n >= 2 && is_prime_u64(static_cast<u64>(n)); }

// Prime factors in ascending order, with multiplicity: 12 -> [2, 2, 3].
std::vector<std::int64_t> factorize(std::int64_t n) {
  if (n < 2) throw ferry::Error(FERRY_E_BAD_REQUEST, "factorize needs n >= 2, got " + std::to_string(n));
  u64 m = static_cast<u64>(n);
  std::vector<u64> factors;
  for (u64 p = 2; p < 1000 && p * p <= m; p += (p == 2 ? 1 : 2)) {
    for (; m % p == 0; m /= p) factors.push_back(p);
  }
  if (m > 1 && m < 1000 * 1000) factors.push_back(m);  // no factor below 1000: prime
  else factor_into(m, factors);
  std::sort(factors.begin(), factors.end());
  return {factors.begin(), factors.end()};
}

}  // namespace

FERRY_PLUGIN("primes", "1.0.0") {
  plugin.def("is_prime", is_prime);
  plugin.def("factorize", factorize);
}
