package saga

// LaneOf lets tests pick customers that share, or do not share, a lane.
var LaneOf = laneOf

// LaneKey lets tests find the partition of an event as the saga does.
var LaneKey = laneKey
