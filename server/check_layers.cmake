# cmake -DSERVER_DIR=<server/> -P check_layers.cmake
#
# Fails when a file of server/ includes a header of a higher layer. The
# layers, lowest first; the files directly in server/ are the top:
#   common < sandbox < config < worker < plugins < loop < exec < (server/)
# worker/main.cpp and worker/log_sink.* are the ferry-worker executable's
# own: they sit on plugins, and must not reach the loop, the executors or
# the server. A new folder must be
# placed in the list before anything builds.
set(layers common sandbox config worker plugins loop exec)
list(LENGTH layers top)

# rel: a path under server/. Sets out to its rank, or fails for an unknown folder.
function(rank_of_path rel out)
  if(NOT rel MATCHES "/")
    set(${out} ${top} PARENT_SCOPE)
    return()
  endif()
  string(REGEX REPLACE "/.*" "" dir "${rel}")
  list(FIND layers "${dir}" r)
  if(r EQUAL -1)
    message(FATAL_ERROR "server/${dir}/ is in no layer: add it to server/check_layers.cmake and docs/design.md")
  endif()
  set(${out} ${r} PARENT_SCOPE)
endfunction()

# The header an include names, as a path under server/ ("" if it is not one):
# "x/y.hpp" or <x/y.hpp> from the include root, or relative to the includer.
function(resolve header includer out)
  get_filename_component(here "${SERVER_DIR}/${includer}" DIRECTORY)
  set(found "")
  foreach(candidate "${SERVER_DIR}/${header}" "${here}/${header}")
    get_filename_component(abs "${candidate}" ABSOLUTE)
    if(EXISTS "${abs}" AND NOT IS_DIRECTORY "${abs}")
      file(RELATIVE_PATH rel "${SERVER_DIR}" "${abs}")
      if(NOT rel MATCHES "^\\.\\.")
        set(found "${rel}")
        break()
      endif()
    endif()
  endforeach()
  set(${out} "${found}" PARENT_SCOPE)
endfunction()

file(GLOB_RECURSE sources RELATIVE ${SERVER_DIR} ${SERVER_DIR}/*.cpp ${SERVER_DIR}/*.hpp ${SERVER_DIR}/*.h)
set(errors "")
foreach(rel IN LISTS sources)
  rank_of_path("${rel}" own)
  if(rel MATCHES "^worker/(main\\.cpp|log_sink\\.[ch]pp)$")
    list(FIND layers plugins own)
  endif()
  file(STRINGS ${SERVER_DIR}/${rel} includes REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]")
  foreach(line IN LISTS includes)
    string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*[<\"]([^>\"]+)[>\"].*" "\\1" header "${line}")
    resolve("${header}" "${rel}" target)
    if(target STREQUAL "")
      continue()  # a system or SDK header
    endif()
    rank_of_path("${target}" theirs)
    if(theirs GREATER own)
      string(APPEND errors "  server/${rel} includes \"${header}\" (server/${target}), a higher layer\n")
    endif()
  endforeach()
endforeach()
if(errors)
  message(FATAL_ERROR "wrong-way includes (docs/design.md, \"Layers and seams\"):\n${errors}")
endif()
