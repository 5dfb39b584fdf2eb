package saga

// LaneOf lets tests pick customers that share, or do not share, a lane.
var LaneOf = laneOf
