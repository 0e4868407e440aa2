/* Prints llama2.c's own encode() output for texts read from stdin.
 * Built by make_llama2c_tokenizer_fixtures.py against a llama2.c checkout:
 *   cc -O1 -I LLAMA2C_DIR tools/reference/llama2c_encode.c -lm -o llama2c_encode
 * run.c is compiled in (its main renamed); nothing of it is kept here.
 * Input: records of a 4-byte little-endian length and that many bytes.
 * Output per record: one line of ids with BOS, then one line without. */
#define main llama2c_run_main
#include "run.c"
#undef main

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s tokenizer.bin vocab_size < records\n", argv[0]);
    return 2;
  }
  Tokenizer t;
  build_tokenizer(&t, argv[1], atoi(argv[2]));
  for (;;) {
    unsigned char len4[4];
    if (fread(len4, 1, 4, stdin) != 4) break;
    const size_t n = (size_t)len4[0] | ((size_t)len4[1] << 8) | ((size_t)len4[2] << 16) | ((size_t)len4[3] << 24);
    char* text = malloc(n + 1);
    if (fread(text, 1, n, stdin) != n) return 1;
    text[n] = '\0';
    int* ids = malloc((n + 3) * sizeof(int));
    for (int bos = 1; bos >= 0; --bos) {
      int count = 0;
      encode(&t, text, (int8_t)bos, 0, ids, &count);
      for (int i = 0; i < count; ++i) printf(i ? " %d" : "%d", ids[i]);
      printf("\n");
    }
    free(ids);
    free(text);
  }
  free_tokenizer(&t);
  return 0;
}
