#include "exec/job.hpp"

#include "plugins/invoke.hpp"

namespace ferry {

Completion run_job(const Job& job, const Invoker& invoker, CallEnv env) {
  env.call_id = job.ref.call_id;
  Result<std::string> r = invoker.invoke(*job.fn, job.payload, job.deadline_ms, env);
  if (!r.ok()) return Completion{job.ref, r.status().code(), r.status().message()};
  return Completion{job.ref, FERRY_OK, std::move(r).value()};
}

}  // namespace ferry
