// client_app SOCKET: one round trip, then a pipeline of calls at high
// priority, answered in any order. Prints "N: result" lines sorted by N.
#include <ferry/client.hpp>

#include <iostream>
#include <map>
#include <string>

int main(int argc, char** argv) {
  std::string error;
  auto client = ferry::Client::connect(argc > 1 ? argv[1] : "/tmp/ferry.sock", &error);
  if (!client) {
    std::cerr << "connect: " << error << '\n';
    return 1;
  }
  auto reply = client->call("primes.is_prime", "[112272535095293]");
  if (!reply || reply->kind != ferry::ReplyKind::result) return 2;
  std::cout << "112272535095293: " << reply->data << '\n';

  std::map<std::uint64_t, int> numbers;  // call id -> its argument
  for (int n : {7, 8, 9, 11})
    numbers[client->send_call("primes.is_prime", "[" + std::to_string(n) + "]", 5000, ferry::Priority::high)] = n;
  std::map<int, std::string> results;
  while (results.size() < numbers.size()) {
    auto r = client->read_reply();
    if (!r) return 3;
    results[numbers.at(r->call_id)] = r->kind == ferry::ReplyKind::result ? r->data : ferry_code_name(r->code);
  }
  for (const auto& [n, result] : results) std::cout << n << ": " << result << '\n';
  auto unknown = client->call("nope.nothing", "[]");
  std::cout << "nope.nothing: " << (unknown ? ferry_code_name(unknown->code) : "lost") << '\n';
  return 0;
}
