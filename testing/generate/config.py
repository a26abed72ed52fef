"""The generator's constants: the names it draws (dims, models, inputs, file paths), the size and rate limits, and the
ops it leaves out (control and source ops, ops only a pass introduces, constructs of open bugs)."""

SYMBOLS = ("B", "T", "N", "L")         # N is also sympy's N(): a good test of the IR text parser
# dim names that are Python keywords or names generated code uses itself (issue 17: a dim `F` or `torch` shadowed
# a module in the torch source, `lambda` broke the IR text parser); drawn only after the plain ones
HOSTILE_SYMBOLS = ("F", "torch", "lambda", "d_B")
# model names the generated torch class, docstrings and comments carry (none a HOSTILE_SYMBOLS dim: a model's name
# is visible in its body, so it would hide the dim)
MODEL_NAMES = ("fuzz", "self", "nn", "math")
# input names that are Python's or the generated module's own names (a call by keyword cannot pass `self`)
HOSTILE_INPUTS = ("self", "np", "math", "forward", "module")
# file names the program is compiled under (what loc() records and the generated sources put in comments):
# newlines, quotes, `#`, backslashes and Unicode line breaks must stay inside comments (issue 17)
FILE_PATHS = ("<fuzz>", 'm\nimport os; os.system("exit 7")\n#"""\'x.pnet', "a\\b\r\x0b\x0c\x85\u2028\u2029#é.pnet")
MAX_NUMEL = 2048          # runtime elements of any tensor the generator creates
# programs whose float inputs hold NaN, +-inf, +-0, huge and tiny values (testing/fuzz.py with_special_values),
# compared by their non-finite pattern instead of discarded (the numeric semantics of docs/language.md)
SPECIALS_FRACTION = 0.2
ZERO_DIM_FRACTION = 0.1   # programs run with one symbolic dim bound to 0 (empty tensors)
BAD_INDEX_FRACTION = 0.08  # index operands moved out of range in the program (every backend: the same error)
BOUND_LIMIT = 1e4         # a value whose |.| estimate exceeds this gets squashed with tanh first
SKIP_KINDS = ("control", "source")
# Ops only the quantization / sparsity passes introduce, whose operands (i8 conv windows, N:M metadata, BSR index
# lists) must come from the pass to be valid. tests/test_quantize.py and tests/test_sparsify.py fuzz each of them
# op by op (hypothesis, torch against NumPy). quantize/dequantize/fake_quant/qmatmul/sub-byte packing have samplers.
# sdpa_grad is autodiff's: the gradient rule of sdpa emits it with o = sdpa(...) (tests/test_attention_backward.py
# checks it against torch.autograd; the fuzzer's `grad` property reaches it through every generated sdpa).
PASS_ONLY_OPS = ("qconv1d", "qconv2d", "qconv3d", "nm_matmul", "bsr_matmul", "sdpa_grad")

# Constructs the generator steers around while a compiler bug it found is open: name -> the regression file
# (tests/regressions/) that pins the bug. Delete an entry when its bug is fixed.
OPEN_BUGS: dict[str, str] = {
}
# ops that take bool operands meaningfully (the rest is arithmetic)
BOOL_OPS = {"logical_and", "logical_or", "logical_not", "where", "eq", "ne", "cast"}
