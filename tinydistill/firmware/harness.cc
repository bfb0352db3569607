// tinydistill's emulation harness: runs the student on the test inputs linked into the image (section
// .test_inputs) and prints, over semihosting, its int8 outputs for each, so they can be compared with host
// TFLite Micro byte for byte. Printing and semihosting are the harness's cost, not the model's.
//
// Lines: "C <ticks> <instructions>" (SysTick calibration), "A <arena bytes used>", "O <input> <ticks> <hex
// outputs>", "D <inputs>", or "E <error>". Under QEMU with -icount, SysTick counts virtual time, which advances
// with executed instructions: the calibration loop turns ticks into instructions.
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "model_data.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include CMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE

extern "C" const int8_t g_test_inputs[];
extern "C" const uint32_t g_test_input_count;

namespace {
alignas(16) uint8_t tensor_arena[g_model_arena_bytes];
volatile uint32_t reloads = 0;
constexpr uint32_t kReload = 0xFFFFFFu;
constexpr uint32_t kSpin = 1000000u;  // iterations of a two-instruction loop

uint64_t Ticks() {
  uint32_t high, low;
  do {
    high = reloads;
    low = SysTick->VAL;
  } while (high != reloads);
  return static_cast<uint64_t>(high) * (kReload + 1u) + (kReload - low);
}

void Spin(uint32_t n) { __asm volatile(".syntax unified\n1: subs %0, %0, #1\n bne 1b" : "+r"(n) : : "cc"); }

void Log(const char* s) { fputs(s, stdout); }
}  // namespace

extern "C" void SysTick_Handler(void) { reloads = reloads + 1u; }

int main() {
  RegisterDebugLogCallback(Log);
  SysTick->LOAD = kReload;
  SysTick->VAL = kReload;
  SysTick->CTRL = SysTick_CTRL_CLKSOURCE_Msk | SysTick_CTRL_TICKINT_Msk | SysTick_CTRL_ENABLE_Msk;
  while (SysTick->VAL == 0u) {
  }  // writing VAL cleared it: wait for the first reload, from which on Ticks() counts up
  uint64_t t0 = Ticks();
  Spin(kSpin);
  printf("C %llu %lu\n", static_cast<unsigned long long>(Ticks() - t0), static_cast<unsigned long>(2u * kSpin));
  static ModelOpResolver resolver;
  if (RegisterModelOps(resolver) != kTfLiteOk) {
    printf("E op registration failed\n");
    return 1;
  }
  static tflite::MicroInterpreter interpreter(tflite::GetModel(g_model), resolver, tensor_arena, sizeof(tensor_arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    printf("E AllocateTensors failed: arena too small or an op missing\n");
    return 1;
  }
  printf("A %lu\n", static_cast<unsigned long>(interpreter.arena_used_bytes()));
  TfLiteTensor* in = interpreter.input(0);
  TfLiteTensor* out = interpreter.output(0);
  for (uint32_t i = 0; i < g_test_input_count; ++i) {
    memcpy(in->data.int8, g_test_inputs + i * in->bytes, in->bytes);
    uint64_t start = Ticks();
    if (interpreter.Invoke() != kTfLiteOk) {
      printf("E Invoke failed on input %lu\n", static_cast<unsigned long>(i));
      return 1;
    }
    uint64_t ticks = Ticks() - start;
    printf("O %lu %llu ", static_cast<unsigned long>(i), static_cast<unsigned long long>(ticks));
    for (size_t j = 0; j < out->bytes; ++j) printf("%02x", static_cast<unsigned>(static_cast<uint8_t>(out->data.int8[j])));
    printf("\n");
  }
  printf("D %lu\n", static_cast<unsigned long>(g_test_input_count));
  return 0;
}
