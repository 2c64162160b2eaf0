# cmake -DSERVER_DIR=<server/> -P check_layers.cmake
#
# Fails when a file of server/ includes a header of a higher layer. The
# layers, lowest first; the files directly in server/ are the top:
#   common < sandbox < config < worker < plugins < loop < exec < (server/)
# worker/main.cpp is the ferry-worker executable: it sits on plugins, and
# must not reach the loop, the executors or the server.
set(layers common sandbox config worker plugins loop exec)
list(LENGTH layers top)

function(rank_of_path rel out)  # rel: path under server/
  string(REGEX MATCH "^[^/]+/" dir "${rel}")
  string(REGEX REPLACE "/$" "" dir "${dir}")
  list(FIND layers "${dir}" r)
  if(dir STREQUAL "" OR r EQUAL -1)
    set(r ${top})
  endif()
  set(${out} ${r} PARENT_SCOPE)
endfunction()

file(GLOB_RECURSE sources RELATIVE ${SERVER_DIR} ${SERVER_DIR}/*.cpp ${SERVER_DIR}/*.hpp)
set(errors "")
foreach(rel IN LISTS sources)
  rank_of_path("${rel}" own)
  if(rel STREQUAL "worker/main.cpp")
    list(FIND layers plugins own)
  endif()
  file(STRINGS ${SERVER_DIR}/${rel} includes REGEX "^#include \"[^\"]+\"")
  foreach(line IN LISTS includes)
    string(REGEX REPLACE "^#include \"([^\"]+)\".*" "\\1" header "${line}")
    if(header MATCHES "^ferry/")  # the SDK's public headers: below every layer
      continue()
    endif()
    if(NOT EXISTS ${SERVER_DIR}/${header})
      continue()
    endif()
    rank_of_path("${header}" theirs)
    if(theirs GREATER own)
      string(APPEND errors "  server/${rel} includes \"${header}\", a higher layer\n")
    endif()
  endforeach()
endforeach()
if(errors)
  message(FATAL_ERROR "wrong-way includes (docs/design.md, \"Layers\"):\n${errors}")
endif()
