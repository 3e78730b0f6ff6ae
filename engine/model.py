"""The transformer on the GPU: activations, the layers (layer.py: each block's weights and KV cache) and the
forward pass.

One block serves every architecture (engine/config.py says what each family adds): a layer's ops are
chosen once at load from its config, so the forward pass never asks which family it runs.

`forward()` records one step's dispatches into a command buffer and submits it; nothing here waits
on the GPU. The KV cache holds `n_seqs` sequences of n_ctx positions each: `forward` runs sequence 0,
`forward_rows` a step whose tokens come from any of them (streams decoding together). Buffers are made
once at load time and every kernel's bindings with them, so a step is only `set_step` or `set_places`
(one small uniform write) plus the recorded dispatches.
"""

from __future__ import annotations

from . import kernels as K
from .config import DEFAULT_N_CTX, ModelConfig
from .errors import ContextTooLong
from .gguf import GGUFFile
from .gpu import Device
from .kernel_ops import Capture
from .layer import Layer, LayerOp, load_layer
from .memory import plan_memory
from .upload import LONG_ROPE_FACTORS, ProgressFn, Rows, Separate, Uploader, Weight, check_no_unknown_tensors, row_parts


class Model:
    """A loaded model: call `forward` with the next tokens, then read logits or the argmax."""

    def __init__(self, device: Device, config: ModelConfig, n_ctx: int, max_batch: int, kernels: K.Kernels,
                 n_seqs: int = 1):
        self.device = device
        self.config = config
        self.n_ctx = n_ctx  # positions a sequence holds
        self.max_batch = max_batch
        self.kernels = kernels
        self.layers: list[Layer] = []
        self._plans: dict[int, object] = {}  # a step of T tokens' dispatches (_record_layers)
        self.n_seqs = n_seqs
        self.past = [0] * n_seqs  # tokens already in each sequence's KV cache

    @property
    def n_past(self) -> int:
        """Tokens already in sequence 0's KV cache (the one `forward` runs)."""
        return self.past[0]

    @n_past.setter
    def n_past(self, n: int) -> None:
        self.past[0] = n

    # ---------------------------------------------------------------- loading

    @classmethod
    def load(
        cls,
        device: Device,
        gguf: GGUFFile,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        max_batch: int | None = None,
        kv_f16: bool = False,
        variant: str | None = None,
        progress: ProgressFn | None = None,
        memory_budget: int | None = None,
        dot4: bool | None = None,
        f16_prompts: bool = False,
        q8_prompts: bool = False,
        n_seqs: int = 1,
    ) -> Model:
        """Upload the weights straight from the file's bytes to GPU buffers and bind every kernel.

        max_batch: the most tokens a step holds (None: K.STEP_TOKENS for the adapter's variant).
        memory_budget: bytes the model may take on the GPU (None: only the adapter's limits bound it).
        dot4: GPUs' integer products (None: where they pay, K.dot4_pays).
        f16_prompts, q8_prompts: prompts' products in f16, or on x in 8 bits (faster, less exact: K.Kernels).
        n_seqs: sequences the KV cache holds, n_ctx positions each (forward_rows runs them together)."""
        if n_seqs < 1:
            raise ValueError(f"a model holds at least one sequence, not {n_seqs}")
        config = ModelConfig.from_gguf(gguf.metadata, set(gguf.tensors))
        n_ctx = min(n_ctx, config.context_length)
        check_no_unknown_tensors(config, gguf.tensors)
        # Before the first buffer: a model that cannot fit is refused, never left half-loaded.
        variant = K.resolve_variant(device.info, variant)
        max_batch = K.STEP_TOKENS[variant] if max_batch is None else max_batch
        dot4 = K.dot4_pays(config.dim) if dot4 is None else dot4
        texels = K.weights_in_texels(variant)
        plan = plan_memory(config, gguf.tensors, n_ctx, max_batch, kv_f16, device.info.weight_binding(texels),
                           variant, dot4=dot4, n_seqs=n_seqs, tiles=K.tiles_fit(device.info, variant),
                           q8_prompts=q8_prompts)
        plan.check(device.info, memory_budget)
        kernels = K.Kernels(device, variant=variant, kv_f16=kv_f16, dot4=dot4, f16_prompts=f16_prompts,
                            q8_prompts=q8_prompts)
        model = cls(device, config, n_ctx, max_batch, kernels, n_seqs)
        # LongRoPE's files hold factors for short and long contexts; the context reads one (progress counts it).
        unused = frozenset(LONG_ROPE_FACTORS) - {config.rope_factors_tensor(n_ctx)}
        uploader = Uploader(device, gguf, progress, unused, kernels.texels_from if texels else None)
        model._make_activations()
        model._load_globals(uploader)
        cache_bytes = kernels.kv_cache_nbytes(n_seqs * model.n_ctx, config.kv_dim)
        for i in range(config.n_layers):
            layer = load_layer(uploader, config, i, cache_bytes)
            layer.ops = model._layer_ops(layer, i)
            model.layers.append(layer)
        return model

    def _make_activations(self) -> None:
        c, T, d = self.config, self.max_batch, self.device
        f32 = 4
        self.ids = d.create_buffer(T * 4, label="ids")  # (T,) u32
        self.x = d.create_buffer(T * c.dim * f32, label="x")  # (T, dim) residual stream
        self.xb = d.create_buffer(T * c.dim * f32, label="xb")  # (T, dim) normed / branch output
        self.qkv = d.create_buffer(T * c.qkv_dim * f32, label="qkv")  # (T, q_dim | kv_dim | kv_dim)
        self.att = d.create_buffer(T * c.q_dim * f32, label="att")  # (T, q_dim) attention output
        self.hb = d.create_buffer(T * c.ffn_dim * f32, label="hb")  # (T, ffn_dim) gate, then silu(gate)*up
        self.hb2 = None  # (T, ffn_dim) up, made only when gate and up differ in type
        self.x_last = d.create_buffer(c.dim * f32, label="x_last")  # (1, dim) last row, normed
        self.logits = d.create_buffer(c.vocab_size * f32, label="logits")  # (vocab,) of the last row
        self.logits_all = None  # (T, vocab), made on first use: only tests read every position
        self.token_out = d.create_buffer(4, label="token_out")  # (1,) u32 argmax
        self.tokens_ahead = d.create_buffer(K.MAX_RING_STEPS * 4, label="tokens_ahead")  # (steps,) u32 argmaxes
        self.rows = min(T, K.MAX_TABLE_TOKENS)  # tokens a step of several sequences holds
        if self.n_seqs > 1:  # forward_rows: the rows that sample, their logits and argmax
            self.x_rows = d.create_buffer(self.rows * c.dim * f32, label="x_rows")  # (rows, dim) normed
            self.row_logits = d.create_buffer(self.rows * c.vocab_size * f32, label="row_logits")  # (rows, vocab)
            self.row_tokens = d.create_buffer(self.rows * 4, label="row_tokens")  # (rows,) u32

    def _load_globals(self, up: Uploader) -> None:
        c, k = self.config, self.kernels
        self.token_embd = up.vocab_matrix("token_embd.weight", (c.dim, c.vocab_size))  # (vocab, dim)
        self.output_norm = up.norm("output_norm.weight", c.dim)  # (dim,)
        # (vocab, dim): the embedding table doubles as the head when the file has no output.weight
        self.output = self.token_embd if c.tied_output else up.vocab_matrix("output.weight", (c.dim, c.vocab_size))
        factors = c.rope_factors_tensor(self.n_ctx)  # Llama 3's rope_freqs, or Phi 3's LongRoPE factors
        self.rope_freqs = up.norm(factors, c.rope_dim // 2) if up.has(factors) else None
        self.ops_embed = [k.embed(w.buffer, w.type, c.dim, self.ids, self.x, scale=c.embed_scale, first_row=first,
                                  n_rows=n if isinstance(self.token_embd, Rows) else 0)  # fmt: skip
                          for w, first, n in row_parts(self.token_embd, c.vocab_size)]
        self.op_final_norm = k.rmsnorm(self.x, self.output_norm, self.xb, c.dim, c.rms_eps)
        self.ops_logits = self._head_ops(self.x_last, self.logits, 1)  # of 1 row
        self.op_softcap = k.softcap(self.logits, c.vocab_size, c.final_softcap) if c.final_softcap else None
        self.op_argmax = k.argmax(self.logits, self.token_out, c.vocab_size)
        if self.n_seqs > 1:
            self.ops_row_logits = self._logits_ops(self.x_rows, self.row_logits, self.rows)
            self.op_argmax_rows = k.argmax(self.row_logits, self.row_tokens, c.vocab_size, rows=True,
                                           max_rows=self.rows)
        # Distinct tokens in any penalty window are at most the context, so the window always fits.
        self.op_penalize = k.penalize(self.logits, c.vocab_size, max_history=self.n_ctx)

    # 9 dispatches a layer on CPU adapters (attention is one there). For one token, a stacked qkv product
    # rotates q and k and stores k and v itself where its heads allow (Kernels.rotates_output; RopeStore): 7,
    # and 5 where their lanes share x's loads, since qkv and gate_up then apply the norms before them too.
    # GPUs' qkv and gate_up also apply the norms before them (Kernels.folds_norm) and their attention is 2:
    # 6; with integer products (Kernels.dot4) the products but o quantise x first, and o takes it from
    # attention: 9, and steps of up to Kernels.fuses_up_to tokens (streams decoding together) run alike.
    # q, k, v (or qk, v: Q4_K_M's layers whose v is Q6_K) and gate, up, glu_mul are there instead of qkv and
    # gate_up only when those weights are Separate (one buffer holds one type); qkv_bias only for Qwen2, q_norm
    # and k_norm for Qwen 3 and Gemma 3. The residual adds are inside o and down (they accumulate into x), or
    # inside Gemma's post-norms, which normalise o's and down's outputs into x.
    def _layer_ops(self, layer: Layer, i: int) -> tuple[LayerOp, ...]:
        """Layer i's dispatch sequence, in execution order, bound to its buffers and the activations."""
        c, k, T = self.config, self.kernels, self.max_batch
        theta, freq_scale = c.rope_base(i)  # Gemma's sliding layers have their own
        rope = dict(n_rot=c.rope_dim, theta=theta, freq_scale=freq_scale, neox=c.rope_neox,
                    freq_factors=self.rope_freqs, mscale=c.rope_attn_factor)
        row, kv_col = c.qkv_dim, c.q_dim  # keys from column q_dim of each qkv row, values after them
        # Products may apply the norms before them themselves (folds_norm), for steps of up to fuses_up_to tokens
        folds = lambda w: min(map(k.fuses_up_to, self._types(w))) if k.folds_norm else 0  # noqa: E731
        before_rope = []
        if layer.bqkv is not None:  # Qwen2
            before_rope.append(LayerOp("qkv_bias", k.add_bias(self.qkv, layer.bqkv, row)))
        if layer.q_norm is not None:  # Qwen 3, Gemma 3: each head of q, then of k
            before_rope += [
                LayerOp("q_norm", k.rmsnorm_heads(self.qkv, layer.q_norm, c.n_heads, c.head_dim, c.rms_eps, row=row)),
                LayerOp("k_norm", k.rmsnorm_heads(self.qkv, layer.k_norm, c.n_kv_heads, c.head_dim, c.rms_eps,
                                                  row=row, col=kv_col)),
            ]
        # The stacked qkv product rotates q and k and stores k and v itself (for steps of up to fuses_up_to
        # tokens) where nothing comes between (no bias, no per-head norms) and pairs are adjacent: rope and
        # store_kv then run only for larger steps
        fused = (isinstance(layer.wqkv, Weight) and k.rotates_output(layer.wqkv.type, c.head_dim)
                 and not (before_rope or c.rope_neox))
        rotated_up_to = k.fuses_up_to(layer.wqkv.type) if fused else 0
        rope_store = None
        if fused:
            tables = k.rope_tables(c.rope_dim, theta, freq_scale, self.rope_freqs)
            rope_store = K.RopeStore(c.q_dim, c.kv_dim, c.head_dim, c.rope_dim, tables, layer.key_cache,
                                     layer.value_cache, c.rope_attn_factor)
        window = c.sliding_window if c.slides(i) else 0
        o_takes_integers = k.uses_dot4(layer.wo.type)  # one token's attention quantises o's x itself
        # ... and one token's stacked gate_up quantises down's
        down_integers = (isinstance(layer.w_gate_up, Weight) and k.uses_dot4(layer.w_gate_up.type)
                         and k.uses_dot4(layer.w_down.type) and c.ffn_dim % 32 == 0)
        attention = k.attention(self.qkv, layer.key_cache, layer.value_cache, self.att, c.n_heads, c.n_kv_heads,
                                c.head_dim, self.n_ctx, T, q_row=row, scale=c.attn_scale, softcap=c.attn_softcap,
                                window=window, quantise_out=o_takes_integers)  # fmt: skip
        return (
            LayerOp("attn_norm", k.rmsnorm(self.x, layer.attn_norm, self.xb, c.dim, c.rms_eps,
                                           folded_up_to=folds(layer.wqkv))),
            *self._qkv_ops(layer.wqkv, (self.x, layer.attn_norm, c.rms_eps), rope_store),
            *before_rope,
            LayerOp("rope", k.rope(self.qkv, c.n_heads + c.n_kv_heads, c.head_dim, row=row, **rope,  # q's, k's
                                   folded_up_to=rotated_up_to)),
            LayerOp("store_kv", k.store_kv(self.qkv, self.qkv, layer.key_cache, layer.value_cache, c.kv_dim,
                                           src_row=row, k_col=kv_col, v_col=kv_col + c.kv_dim,
                                           folded_up_to=rotated_up_to)),
            LayerOp("attention", attention),
            *self._into_residual("o", layer.wo, c.q_dim, self.att, layer.attn_post_norm,  # x += (norm) wo att
                                 x_quantised=o_takes_integers),
            LayerOp("ffn_norm", k.rmsnorm(self.x, layer.ffn_norm, self.xb, c.dim, c.rms_eps,
                                          folded_up_to=folds(layer.w_gate_up))),
            *self._gate_up_ops(layer.w_gate_up, (self.x, layer.ffn_norm, c.rms_eps), down_integers),
            *self._into_residual("down", layer.w_down, c.ffn_dim, self.hb, layer.ffn_post_norm,  # x += (norm) down
                                 x_quantised=down_integers),
        )

    def _into_residual(self, name: str, w: Weight, n_in: int, x, post_norm, x_quantised: bool = False
                       ) -> list[LayerOp]:
        """x += W x_branch, in the product itself; with Gemma's post-norm, x += rmsnorm(W x_branch) (the
        product writes xb, free by then, and the norm adds into x). x_quantised: Kernels.matmul's."""
        c = self.config
        if post_norm is None:
            return [LayerOp(name, self._matmul(w, n_in, c.dim, x, self.x, accumulate=True, x_quantised=x_quantised))]
        return [
            LayerOp(name, self._matmul(w, n_in, c.dim, x, self.xb, x_quantised=x_quantised)),
            LayerOp(f"{name}_post_norm", self.kernels.rmsnorm(self.xb, post_norm, self.x, c.dim, c.rms_eps,
                                                              accumulate=True)),
        ]

    def _qkv_ops(self, wqkv: Weight | Separate, norm: tuple, rope_store=None) -> list[LayerOp]:
        """qkv[t] = (wq | wk | wv) xb[t]: one product over the stacked weights, or one per weight
        (`norm`: the attention norm, for products that fold it in; rope_store: Kernels.matmul's)."""
        c = self.config
        if isinstance(wqkv, Weight):
            product = self._matmul(wqkv, c.dim, c.qkv_dim, self.xb, self.qkv, norm=norm, rope_store=rope_store)
            return [LayerOp("qkv", product)]
        starts = {0: "q", c.q_dim: "k", c.q_dim + c.kv_dim: "v"}  # each part named by what it holds: q, qk, v..
        cols = [sum(wqkv.rows[:i]) for i in range(len(wqkv.rows))]
        names = ["".join(m for start, m in starts.items() if col <= start < col + n)
                 for col, n in zip(cols, wqkv.rows, strict=True)]
        reuse = self._reuse_x(wqkv)
        return [
            LayerOp(name, self._matmul(w, c.dim, n, self.xb, self.qkv, y_stride=c.qkv_dim, y_col=col, norm=norm,
                                       reuse_x=again))
            for name, w, n, col, again in zip(names, wqkv.parts, wqkv.rows, cols, reuse, strict=True)
        ]

    @staticmethod
    def _types(w: Weight | Separate) -> list[int]:
        """The weight types of a stacked weight, or of each of its parts."""
        return [part.type for part in w.parts] if isinstance(w, Separate) else [w.type]

    def _reuse_x(self, parts: Separate) -> list[bool]:
        """For products of one x in a row: whether each can take x as integers from an earlier one
        (Kernels.matmul's reuse_x), which holds once a part before it quantised x."""
        reuse, quantised = [], False
        for w in parts.parts:
            reuse.append(quantised)
            quantised = quantised or self.kernels.uses_dot4(w.type)
        return reuse

    def _gate_up_ops(self, w_gate_up: Weight | Separate, norm: tuple, quantise_out: bool = False) -> list[LayerOp]:
        """hb = act(w_gate xb) * (w_up xb): one GLU product over the stacked weights, or three ops
        (`norm`: the feed-forward norm, for products that fold it in; quantise_out: Kernels.matmul's)."""
        c = self.config
        if isinstance(w_gate_up, Weight):
            glu = self._matmul(w_gate_up, c.dim, c.ffn_dim, self.xb, self.hb, glu=c.glu, norm=norm,
                               quantise_out=quantise_out)
            return [LayerOp("gate_up", glu)]
        w_gate, w_up = w_gate_up.parts
        if self.hb2 is None:
            self.hb2 = self.device.create_buffer(self.max_batch * c.ffn_dim * 4, label="hb2")
        again = self._reuse_x(w_gate_up)[1]
        return [
            LayerOp("gate", self._matmul(w_gate, c.dim, c.ffn_dim, self.xb, self.hb, norm=norm)),
            LayerOp("up", self._matmul(w_up, c.dim, c.ffn_dim, self.xb, self.hb2, norm=norm, reuse_x=again)),
            LayerOp("glu_mul", self.kernels.glu_mul(self.hb, self.hb2, self.hb, c.ffn_dim, c.glu)),
        ]

    def _matmul(self, w: Weight, n_in: int, n_out: int, x, y, **options) -> K.Op:
        """y = W x for up to max_batch rows of x (options: Kernels.matmul's)."""
        return self.kernels.matmul(w.buffer, w.type, n_in, n_out, x, y, self.max_batch, **options)

    # ---------------------------------------------------------------- the forward pass

    def forward(self, tokens: list[int], *, all_logits: bool = False, recorder=None):
        """Run `tokens` (at most max_batch) at positions n_past.. and leave the last row's logits in
        `self.logits` (every row's in `self.logits_all` if asked). Records into `recorder` if given,
        so the caller can append sampling dispatches before one submit; returns the recorder."""
        T = len(tokens)
        if not 0 < T <= self.max_batch:
            raise ValueError(f"forward takes 1..{self.max_batch} tokens, got {T}")
        self._check_room(T)
        self.device.write_buffer(self.ids, _u32_bytes(tokens))
        rec = recorder or self.device.recorder()
        self._record_forward(T, rec, all_logits)
        if recorder is None:
            self.device.submit(rec)
        return rec

    def forward_greedy(self, recorder, n_steps: int) -> None:
        """Record n_steps greedy steps, each on the token the argmax before it left in `token_out` (copied on
        the GPU: the host need not have read it back; the engine runs steps ahead of its read-backs), and its
        own argmax into `token_out` and `tokens_ahead[i]`: one submission and one read-back for n_steps tokens."""
        self._check_room(n_steps)
        self.kernels.set_steps(self.n_past, n_steps)
        for i in range(n_steps):
            self.kernels.use_ring_step(recorder, i)
            recorder.copy(self.token_out, 0, self.ids, 0, 4)
            self._record_step(1, recorder, all_logits=False)
            self.op_argmax.record(recorder, 1)
            recorder.copy(self.token_out, 0, self.tokens_ahead, 4 * i, 4)

    def _check_room(self, T: int) -> None:
        if self.n_past + T > self.n_ctx:
            raise ContextTooLong(f"the context holds {self.n_ctx} tokens; this step needs {self.n_past + T}")

    def forward_rows(self, rows: list[tuple[int, int]], sample: list[int], *, recorder=None):
        """One step of tokens from several sequences: row i runs token rows[i][1] of sequence rows[i][0] at
        that sequence's next position (a sequence's rows in the order given: a prompt's chunk, or one
        token of each stream decoding). Only the rows `sample` names go through the head (a prompt's
        other rows need no logits): the logits of row sample[j] land in `row_logits` row j, its argmax
        in `row_tokens[j]`. Records into `recorder` if given (then the caller submits); returns it."""
        T, c = len(rows), self.config
        if self.n_seqs == 1:
            raise ValueError("forward_rows needs a model loaded with n_seqs > 1")
        if not 0 < T <= self.rows:
            raise ValueError(f"a step of several sequences takes 1..{self.rows} tokens, got {T}")
        if any(not 0 <= i < T for i in sample):
            raise ValueError(f"rows to sample {sample} are not all among the step's {T}")
        places, past = [], list(self.past)
        for seq, _token in rows:
            if not 0 <= seq < self.n_seqs:
                raise ValueError(f"sequence {seq} is not one of this model's {self.n_seqs}")
            places.append((seq * self.n_ctx, past[seq]))
            past[seq] += 1
        if (longest := max(past)) > self.n_ctx:
            raise ContextTooLong(f"the context holds {self.n_ctx} tokens; this step needs {longest}")
        self.device.write_buffer(self.ids, _u32_bytes([token for _seq, token in rows]))
        rec = recorder or self.device.recorder()
        self.kernels.set_places(places)
        self._record_layers(T, rec)
        for j, i in enumerate(sample):  # (as _record_forward does with its last row)
            rec.copy(self.xb, i * c.dim * 4, self.x_rows, j * c.dim * 4, c.dim * 4)
        if sample:
            for op in (*self.ops_row_logits, self.op_argmax_rows):
                op.record(rec, len(sample))
        self.past = past
        if recorder is None:
            self.device.submit(rec)
        return rec

    def _record_layers(self, T: int, rec) -> None:
        """Embedding, every layer and the final norm (into xb) for the step StepParams describes, replayed
        from the plan of a step of T tokens: the ops are fixed at load and their dispatches depend on T only
        (positions and places come through StepParams), so each T's are captured once."""
        plan = self._plans.get(T)
        if plan is None:
            capture = Capture()
            for op in self.ops_embed:
                op.record(capture, T)
            for layer in self.layers:
                for layer_op in layer.ops:  # built once at load (Model._layer_ops)
                    layer_op.op.record(capture, T)
            self.op_final_norm.record(capture, T)
            plan = self._plans[T] = self.device.plan(capture.dispatches)
        rec.replay(plan)

    def _record_forward(self, T: int, rec, all_logits: bool) -> None:
        self.kernels.set_step(self.n_past, T)
        self._record_step(T, rec, all_logits)

    def _record_step(self, T: int, rec, all_logits: bool) -> None:
        """A step of T tokens at n_past, its StepParams already in place: layers, then the last row's logits."""
        c = self.config
        self._record_layers(T, rec)
        if all_logits:
            for op in self._all_logits_ops():
                op.record(rec, T)
        # Only the last position's logits are needed to go on: copy its row out and run the head on it.
        rec.copy(self.xb, (T - 1) * c.dim * 4, self.x_last, 0, c.dim * 4)
        for op in self.ops_logits:
            op.record(rec, 1)
        if self.op_softcap is not None:  # Gemma 2
            self.op_softcap.record(rec, 1)
        self.n_past += T

    def _head_ops(self, x, logits, max_tokens: int) -> list[K.Op]:
        """logits = output x for up to max_tokens rows: one product, or one per row range of a split head."""
        c, k = self.config, self.kernels
        if isinstance(self.output, Weight):
            return [k.matmul(self.output.buffer, self.output.type, c.dim, c.vocab_size, x, logits, max_tokens)]
        return [k.matmul(w.buffer, w.type, c.dim, n, x, logits, max_tokens, y_stride=c.vocab_size, y_col=first)
                for w, first, n in self.output.parts]  # fmt: skip

    def _logits_ops(self, x, logits, max_tokens: int) -> list[K.Op]:
        """The head over up to max_tokens rows of x, then Gemma 2's soft-capping of the logits."""
        c = self.config
        ops = self._head_ops(x, logits, max_tokens)
        return [*ops, self.kernels.softcap(logits, c.vocab_size, c.final_softcap)] if c.final_softcap else ops

    def _all_logits_ops(self) -> list[K.Op]:
        if self.logits_all is None:
            c = self.config
            self.logits_all = self.device.create_buffer(self.max_batch * c.vocab_size * 4, label="logits_all")
            self._ops_logits_all = self._logits_ops(self.xb, self.logits_all, self.max_batch)
        return self._ops_logits_all

    def rewind(self, n_past: int, seq: int = 0) -> None:
        """Forget sequence seq's cached positions from `n_past` on (later tokens simply overwrite them)."""
        self.past[seq] = max(0, min(n_past, self.past[seq]))


def _u32_bytes(values: list[int]) -> bytes:
    import array

    return array.array("I", values).tobytes()
