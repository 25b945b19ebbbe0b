module geminio-interop

go 1.20

require (
	github.com/jumboframes/armorigo v0.2.5
	github.com/singchia/geminio v1.1.8
)

require (
	github.com/singchia/go-timer/v2 v2.2.1 // indirect
	github.com/singchia/yafsm v1.0.1 // indirect
)
