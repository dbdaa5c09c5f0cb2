# Included at the end of llama.cpp's own project() call (CMAKE_PROJECT_llama.cpp_INCLUDE, set by
# the Makefile) while pip builds llama-cpp-python 0.3.36 from source.
#
# llama-cpp-python forces LLAMA_BUILD_COMMON on (a CACHE FORCE that a -D cannot undo), but its
# Python package never loads llama-common: it ships libllama, libggml* and libmtmd only. That
# library (chat parsers, Jinja, JSON, an HTTP client) is about a third of the build. A normal
# variable set here shadows the cached ON inside llama.cpp's directory, so common and its
# cpp-httplib are not built; nothing else changes (doctor's report, GPU back-ends).
set(LLAMA_BUILD_COMMON OFF)
