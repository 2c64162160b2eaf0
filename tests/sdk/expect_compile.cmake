# cmake -DCXX=<compiler> -DINCLUDES=<dir|dir...> -DSOURCE=<file> -DEXPECT=<accept|reject> -P expect_compile.cmake
#
# Runs `CXX -std=c++20 -fsyntax-only` on SOURCE.
#   accept: must compile.
#   reject: must fail with exactly one error, the SDK's "plugin functions must
#           be synchronous" static_assert, so no other mistake can pass for it.
# On success prints "ok: ..." (the ctest PASS_REGULAR_EXPRESSION).
set(message "plugin functions must be synchronous")
string(REPLACE "|" ";" includes "${INCLUDES}")
list(TRANSFORM includes PREPEND "-I")
execute_process(
  COMMAND ${CXX} -std=c++20 -fsyntax-only -fdiagnostics-color=never ${includes} ${SOURCE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)

string(REGEX MATCHALL "error:" errors "${out}")
list(LENGTH errors error_count)
if(EXPECT STREQUAL "accept")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${SOURCE} should compile but failed:\n${out}")
  endif()
  message("ok: accepted")
elseif(EXPECT STREQUAL "reject")
  if(rc EQUAL 0)
    message(FATAL_ERROR "${SOURCE} compiled, but the SDK should have rejected it")
  endif()
  string(FIND "${out}" "${message}" at)
  if(at EQUAL -1 OR NOT error_count EQUAL 1)
    message(FATAL_ERROR "${SOURCE}: expected exactly one error, '${message}'; "
                        "got ${error_count}:\n${out}")
  endif()
  message("ok: rejected with '${message}' as the only error")
else()
  message(FATAL_ERROR "EXPECT must be accept or reject")
endif()
