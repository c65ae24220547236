/* Linked only into the sanitizer builds (make san): a report ends the program with an error
 * status, so a test that checks the exit status fails on it (UBSan only warns by default). */
const char *__asan_default_options(void) { return "detect_leaks=1:exitcode=99"; }
const char *__ubsan_default_options(void) { return "halt_on_error=1:print_stacktrace=1:exitcode=98"; }
