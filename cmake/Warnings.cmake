# Warning flags for rollsafe's own targets.
add_compile_options(-Wall -Wextra -Wpedantic -Wshadow=local -Wnon-virtual-dtor)
# GCC 12 reports a false -Wmismatched-new-delete inside asio's co_spawn at -O2.
add_compile_options($<$<CXX_COMPILER_ID:GNU>:-Wno-mismatched-new-delete>)
if(ROLLSAFE_WERROR)
  add_compile_options(-Werror)
endif()
add_compile_definitions(BOOST_ASIO_NO_DEPRECATED BOOST_BEAST_USE_STD_STRING_VIEW)
