package bench

import (
	"math"
	"math/rand/v2"
)

// ZipfianConstant is YCSB's default skew (theta) of the zipfian distribution.
const ZipfianConstant = 0.99

// Zipfian draws ranks 0..n-1 with P(rank k) proportional to 1/(k+1)^theta, by
// the method of Gray et al., "Quickly Generating Billion-Record Synthetic
// Databases" (SIGMOD 1994), as YCSB's ZipfianGenerator: rank 0 is the most
// popular. It is not safe for concurrent use; give each client its own.
type Zipfian struct {
	n            uint64
	theta, alpha float64
	zetan, eta   float64
	half         float64 // 1 + 0.5^theta
	rng          *rand.Rand
}

// NewZipfian returns a zipfian generator over n ≥ 1 ranks with skew theta
// (0 < theta < 1), drawing from rng.
func NewZipfian(n uint64, theta float64, rng *rand.Rand) *Zipfian {
	zetan := zeta(n, theta)
	z := &Zipfian{n: n, theta: theta, alpha: 1 / (1 - theta), zetan: zetan, rng: rng,
		half: 1 + math.Pow(0.5, theta)}
	z.eta = (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta(2, theta)/zetan)
	return z
}

// zeta is the generalized harmonic number: sum over i in 1..n of 1/i^theta.
func zeta(n uint64, theta float64) float64 {
	sum := 0.0
	for i := uint64(1); i <= n; i++ {
		sum += 1 / math.Pow(float64(i), theta)
	}
	return sum
}

// Prob returns the theoretical probability of rank k.
func (z *Zipfian) Prob(k uint64) float64 {
	return 1 / math.Pow(float64(k+1), z.theta) / z.zetan
}

// WithRand returns a generator of the same distribution drawing from rng,
// without computing the distribution's constants again.
func (z *Zipfian) WithRand(rng *rand.Rand) *Zipfian {
	c := *z
	c.rng = rng
	return &c
}

// Next returns the next rank, in 0..n-1.
func (z *Zipfian) Next() uint64 {
	u := z.rng.Float64()
	uz := u * z.zetan
	if uz < 1 {
		return 0
	}
	if uz < z.half {
		return min(1, z.n-1)
	}
	r := uint64(float64(z.n) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	return min(r, z.n-1)
}

// ScrambledZipfian draws indices 0..n-1 whose popularity is zipfian but whose
// popular indices are scattered over the range rather than clustered at 0: the
// zipfian rank is hashed (FNV-1a 64) onto an index, as YCSB's
// ScrambledZipfianGenerator does. Not safe for concurrent use.
type ScrambledZipfian struct {
	z *Zipfian
	n uint64
}

// NewScrambledZipfian returns a scrambled zipfian generator over n ≥ 1
// indices with YCSB's constant 0.99, drawing from rng.
func NewScrambledZipfian(n uint64, rng *rand.Rand) *ScrambledZipfian {
	return &ScrambledZipfian{z: NewZipfian(n, ZipfianConstant, rng), n: n}
}

// WithRand returns a generator of the same distribution drawing from rng.
func (s *ScrambledZipfian) WithRand(rng *rand.Rand) *ScrambledZipfian {
	return &ScrambledZipfian{z: s.z.WithRand(rng), n: s.n}
}

// Index returns the index rank k of the underlying zipfian maps to.
func (s *ScrambledZipfian) Index(rank uint64) uint64 { return fnv64(rank) % s.n }

// Next returns the next index, in 0..n-1.
func (s *ScrambledZipfian) Next() uint64 { return s.Index(s.z.Next()) }

// Uniform draws indices 0..n-1 uniformly. Not safe for concurrent use.
type Uniform struct {
	n   uint64
	rng *rand.Rand
}

// NewUniform returns a uniform generator over n ≥ 1 indices.
func NewUniform(n uint64, rng *rand.Rand) *Uniform { return &Uniform{n: n, rng: rng} }

// Next returns the next index, in 0..n-1.
func (u *Uniform) Next() uint64 { return u.rng.Uint64N(u.n) }
